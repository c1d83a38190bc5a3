//! Stripe for the billing tests. Stripe's API is not reachable from here, so a stand-in answers
//! the endpoints the platform calls, with bodies in Stripe's documented shapes (built from the
//! minimal objects async-stripe's generated types require, `peers/stripe/objects.json`, so its
//! deserialisation checks them), records every request, and fails on demand. Webhook payloads
//! are signed by the official Stripe library (`peers/stripe/sign.py`, PyPI `stripe`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const OBJECTS: &str = include_str!("../peers/stripe/objects.json");

fn object(name: &str) -> Value {
    let all: Value = serde_json::from_str(OBJECTS).expect("objects.json");
    all[name].clone()
}

/// Merges `patch` into `base` (objects key by key; anything else replaced).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// A subscription with one item on `price`.
#[must_use]
pub fn subscription(id: &str, customer: &str, price: &str, status: &str, period_end: i64) -> Value {
    let mut price_obj = object("Price");
    merge(
        &mut price_obj,
        json!({"id": price, "object": "price", "type": "recurring", "active": true}),
    );
    let mut item = object("SubscriptionItem");
    merge(
        &mut item,
        json!({"id": format!("si_{id}"), "object": "subscription_item", "price": price_obj,
               "subscription": id, "current_period_end": period_end,
               "current_period_start": period_end - 30 * 86_400}),
    );
    let mut s = object("Subscription");
    merge(
        &mut s,
        json!({"id": id, "object": "subscription", "customer": customer, "status": status,
               "items": {"object": "list", "data": [item], "has_more": false,
                         "url": format!("/v1/subscription_items?subscription={id}")}}),
    );
    s
}

/// An invoice of `customer` for `amount` (minor units, USD).
#[must_use]
pub fn invoice(id: &str, customer: &str, amount: i64, email: &str) -> Value {
    let mut i = object("Invoice");
    merge(
        &mut i,
        json!({"id": id, "object": "invoice", "customer": customer, "amount_due": amount,
               "currency": "usd", "customer_email": email,
               "hosted_invoice_url": format!("https://invoice.stripe.com/i/{id}")}),
    );
    i
}

/// An event envelope.
#[must_use]
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "created": created, "livemode": false,
           "pending_webhooks": 1, "type": kind, "data": {"object": object}})
}

/// The `Stripe-Signature` header for `payload`, made by the official library.
#[must_use]
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    crate::peers::installed();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/stripe");
    let mut child = std::process::Command::new(dir.join(".venv/bin/python"))
        .arg(dir.join("sign.py"))
        .arg(secret)
        .arg(timestamp.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sign.py");
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(payload.as_bytes())
            .expect("write payload");
    }
    let out = child.wait_with_output().expect("sign.py");
    assert!(out.status.success(), "sign.py failed");
    String::from_utf8(out.stdout).expect("header")
}

/// Now, in Unix seconds.
#[must_use]
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A request the stand-in received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Form fields (POST) or query pairs (GET), decoded.
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
}

impl Recorded {
    /// The value of form field `k`.
    #[must_use]
    pub fn field(&self, k: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    subscriptions: HashMap<String, Value>,
    events: Vec<Value>,
    /// Path prefix -> how many more requests to fail with a 500.
    failures: HashMap<String, u32>,
    /// Path prefix -> how many more requests to answer only after a delay, and the delay.
    stalls: HashMap<String, (u32, std::time::Duration)>,
    preview_amount: i64,
    customers: u32,
}

/// The Stripe API stand-in, on a loopback port.
#[derive(Clone)]
pub struct StripeStandIn {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl StripeStandIn {
    /// Starts it.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            preview_amount: 1234,
            ..Inner::default()
        }));
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Stripe stand-in");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{addr}/"),
            inner,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subscription Stripe holds now (what a refetch returns).
    pub fn put_subscription(&self, s: Value) {
        let id = s["id"].as_str().expect("id").to_owned();
        self.lock().subscriptions.insert(id, s);
    }

    /// Events `GET /v1/events` lists.
    pub fn put_event(&self, e: Value) {
        self.lock().events.push(e);
    }

    /// The next `n` requests whose path starts with `prefix` answer 500.
    pub fn fail(&self, prefix: &str, n: u32) {
        self.lock().failures.insert(prefix.to_owned(), n);
    }

    /// The next `n` requests whose path starts with `prefix` are answered only after `delay` (a
    /// slow Stripe; they are recorded on arrival).
    pub fn stall(&self, prefix: &str, n: u32, delay: std::time::Duration) {
        self.lock().stalls.insert(prefix.to_owned(), (n, delay));
    }

    /// Every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests `METHOD path-prefix`.
    #[must_use]
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }
}

fn pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let form = if method == Method::GET {
        pairs(uri.query().unwrap_or_default())
    } else {
        pairs(&String::from_utf8_lossy(&body))
    };
    let rec = Recorded {
        method: method.to_string(),
        path: path.clone(),
        form,
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let stall = {
        let mut st = inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.requests.push(rec.clone());
        st.stalls
            .iter_mut()
            .find(|(p, (n, _))| path.starts_with(p.as_str()) && *n > 0)
            .map(|(_, (n, delay))| {
                *n -= 1;
                *delay
            })
    };
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    let mut st = inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, n)) = st
        .failures
        .iter_mut()
        .find(|(p, n)| path.starts_with(p.as_str()) && **n > 0)
    {
        *n -= 1;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"type": "api_error", "message": "stand-in failure"}})),
        )
            .into_response();
    }
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "customers"]) => {
            st.customers += 1;
            let mut c = object("Customer");
            merge(
                &mut c,
                json!({"id": format!("cus_{}", st.customers), "object": "customer",
                       "email": rec.field("email")}),
            );
            ok(c)
        }
        ("POST", ["v1", "checkout", "sessions"]) => {
            let mut s = object("CheckoutSession");
            merge(
                &mut s,
                json!({"id": "cs_test_1", "object": "checkout.session", "mode": "subscription",
                       "url": "https://checkout.stripe.com/c/pay/cs_test_1",
                       "customer": rec.field("customer"),
                       "client_reference_id": rec.field("client_reference_id")}),
            );
            ok(s)
        }
        ("POST", ["v1", "billing_portal", "sessions"]) => {
            let mut s = object("BillingPortalSession");
            merge(
                &mut s,
                json!({"id": "bps_1", "object": "billing_portal.session",
                       "configuration": "bpc_1", "customer": rec.field("customer"),
                       "url": "https://billing.stripe.com/p/session/bps_1"}),
            );
            ok(s)
        }
        ("GET", ["v1", "subscriptions", id]) => match st.subscriptions.get(*id) {
            Some(s) => ok(s.clone()),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"type": "invalid_request_error", "message": "No such subscription"}})),
            )
                .into_response(),
        },
        ("POST", ["v1", "subscriptions", id]) => {
            let id = (*id).to_owned();
            let Some(mut s) = st.subscriptions.get(&id).cloned() else {
                return StatusCode::NOT_FOUND.into_response();
            };
            if let Some(price) = rec.field("items[0][price]") {
                s["items"]["data"][0]["price"]["id"] = json!(price);
            }
            st.subscriptions.insert(id, s.clone());
            ok(s)
        }
        ("POST", ["v1", "invoices", "create_preview"]) => {
            let mut i = invoice("upcoming", rec.field("customer").unwrap_or("cus"), st.preview_amount, "");
            i.as_object_mut().map(|o| o.remove("id"));
            ok(i)
        }
        ("POST", ["v1", "billing", "meter_events"]) => {
            let mut e = object("BillingMeterEvent");
            merge(
                &mut e,
                json!({"object": "billing.meter_event",
                       "event_name": rec.field("event_name"),
                       "identifier": rec.field("identifier"),
                       "payload": {"stripe_customer_id": rec.field("payload[stripe_customer_id]"),
                                   "value": rec.field("payload[value]")}}),
            );
            ok(e)
        }
        ("GET", ["v1", "events"]) => ok(json!({
            "object": "list", "data": st.events.iter().rev().cloned().collect::<Vec<_>>(),
            "has_more": false, "url": "/v1/events"})),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"type": "invalid_request_error", "message": format!("stand-in: no route {method} {path}")}})),
        )
            .into_response(),
    }
}
