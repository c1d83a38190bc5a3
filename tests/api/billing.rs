//! Billing with Stripe (issue 19) through the real router: webhooks signed by the official Stripe
//! library, a Stripe API stand-in (async-stripe deserialises its answers), the control plane and
//! the tenant database read as a user would notice.

mod dunning;
mod plans;
mod quotas;
mod seats;
mod suspension;
mod usage;
mod webhooks;

use axum::http::Method;
use platform_tests::app::TestApp;
use platform_tests::requests::{Req, TestResponse};
use platform_tests::stripe::{self, StripeStandIn};
use platform_tests::{TestTenant, clusters, connect};
use serde_json::{Value, json};

/// The webhook secret after a roll, and the one before it (both accepted during the roll).
pub const SECRET: &str = "whsec_test_new_0123456789";
pub const OLD_SECRET: &str = "whsec_test_old_0123456789";
/// The billing contact the checkout sets.
pub const CONTACT: &str = "billing@acme.test";

/// An instance wired to a Stripe stand-in, one tenant, and the databases.
pub struct Billed {
    pub app: TestApp,
    pub stripe: StripeStandIn,
    pub t: TestTenant,
    /// The control plane, as its owner.
    pub cp: tokio_postgres::Client,
    /// The shared tenant database, as superuser.
    pub shared: tokio_postgres::Client,
}

impl Billed {
    pub async fn start() -> Self {
        let stripe = StripeStandIn::start().await;
        let secrets = format!("{OLD_SECRET},{SECRET}");
        let app = TestApp::spawn_with(&[
            ("PLATFORM_STRIPE_SECRET_KEY", "sk_test_stand_in"),
            ("PLATFORM_STRIPE_WEBHOOK_SECRET", &secrets),
            ("PLATFORM_STRIPE_API_BASE", &stripe.base),
        ])
        .await;
        let t = app.tenant("acme", "shared", None).await;
        let c = clusters();
        let cp = connect(&c.primary.url(&app.control_db)).await;
        let shared = connect(&c.primary.url(&app.shared_db)).await;
        // The operator's price configuration: one monthly and one yearly price per plan.
        cp.batch_execute(
            "UPDATE plans SET stripe_price_monthly = 'price_' || name,
                              stripe_price_yearly = 'price_' || name || '_yearly'",
        )
        .await
        .expect("prices");
        Self {
            app,
            stripe,
            t,
            cp,
            shared,
        }
    }

    pub async fn finish(self) {
        self.app.finish().await;
    }

    /// A tenant API request with the tenant's admin key.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        self.app.api(&self.t, method, path, body).await
    }

    /// Delivers `payload` to the webhook with `signature`.
    pub async fn deliver_raw(&self, body: &str, signature: Option<&str>) -> TestResponse {
        let mut r = Req::new(Method::POST, "/webhooks/stripe")
            .raw(body.as_bytes().to_vec(), Some("application/json"));
        if let Some(s) = signature {
            r = r.header("stripe-signature", s);
        }
        self.app.send(r).await
    }

    /// Delivers `event` signed now with the current secret; expects a 200.
    pub async fn deliver(&self, event: &Value) -> TestResponse {
        let body = event.to_string();
        let r = self
            .deliver_raw(&body, Some(&stripe::sign(&body, SECRET, stripe::now())))
            .await;
        r.assert_status(200);
        r
    }

    /// Starts a subscription as a tenant admin does: Checkout (which creates the Stripe
    /// customer `cus_1`), then Stripe's `customer.subscription.created` for `sub_1` on `plan`.
    pub async fn subscribe(&self, plan: &str) {
        let r = self
            .api(
                Method::POST,
                "/api/v1/billing/checkout",
                Some(json!({"plan": plan, "contact_email": CONTACT,
                            "return_url": "https://acme.example/billing"})),
            )
            .await;
        r.assert_status(200);
        let sub = stripe::subscription(
            "sub_1",
            "cus_1",
            &format!("price_{plan}"),
            "active",
            stripe::now() + 20 * 86_400,
        );
        self.stripe.put_subscription(sub.clone());
        self.deliver(&stripe::event(
            "evt_created",
            "customer.subscription.created",
            stripe::now() - 100,
            sub,
        ))
        .await;
    }

    /// Stripe's `invoice.payment_failed` (event `evt_fail`) or `invoice.paid` (`evt_paid`) for
    /// the invoice `in_1` of 49.00 USD, delivered now.
    pub async fn invoice_event(&self, paid: bool) {
        let (id, kind) = if paid {
            ("evt_paid", "invoice.paid")
        } else {
            ("evt_fail", "invoice.payment_failed")
        };
        self.deliver(&stripe::event(
            id,
            kind,
            stripe::now(),
            stripe::invoice("in_1", "cus_1", 4900, CONTACT),
        ))
        .await;
    }

    /// Sets columns of the account (`set`: an SQL `SET` list): the tests' clock is the stored
    /// deadlines. Then waits until `check` holds: the change reaches the request path's cached
    /// standing by its notification, within about a second.
    pub async fn set_account_then<F, Fut>(&self, set: &str, what: &str, check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.cp
            .execute(
                &format!("UPDATE billing_accounts SET {set} WHERE tenant_id = $1::text::uuid"),
                &[&self.t.id],
            )
            .await
            .expect("advance the clock");
        assert!(
            platform_tests::eventually(std::time::Duration::from_secs(10), check)
                .await
                .is_some(),
            "{what}"
        );
    }

    /// `GET /api/v1/billing`.
    pub async fn billing(&self) -> Value {
        let r = self.api(Method::GET, "/api/v1/billing", None).await;
        r.assert_status(200);
        r.body
    }

    /// The account's column `col` as text.
    pub async fn account(&self, col: &str) -> Option<String> {
        self.cp
            .query_one(
                &format!(
                    "SELECT {col}::text FROM billing_accounts WHERE tenant_id = $1::text::uuid"
                ),
                &[&self.t.id],
            )
            .await
            .expect("account row")
            .get(0)
    }

    /// The ids of the Stripe events recorded.
    pub async fn events_recorded(&self) -> Vec<String> {
        self.cp
            .query("SELECT id FROM stripe_events ORDER BY received_at", &[])
            .await
            .expect("events")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The tenant's billing email jobs: (kind, payload).
    pub async fn billing_emails(&self) -> Vec<(String, Value)> {
        self.shared
            .query(
                "SELECT kind, payload FROM jobs WHERE tenant_id = $1::text::uuid
                 AND kind LIKE 'email.billing_%' ORDER BY created_at, id",
                &[&self.t.id],
            )
            .await
            .expect("jobs")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The statuses the operators' audit trail recorded for the account, in order.
    pub async fn audited_statuses(&self) -> Vec<String> {
        self.cp
            .query(
                "SELECT summary->>'status' FROM admin_audit_events
                 WHERE target_type = 'billing_account' AND tenant_id = $1::text::uuid
                   AND summary ? 'status' ORDER BY seq",
                &[&self.t.id],
            )
            .await
            .expect("audit")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// A write of the reference domain: creates a project.
    pub async fn write(&self) -> TestResponse {
        self.api(
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "p", "description": "d"})),
        )
        .await
    }
}
