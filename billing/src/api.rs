//! The calls to Stripe's API, through async-stripe (its generated request types, its
//! deserialisation of the answers). None is made with a database transaction open: the webhook
//! fetches a subscription (for an event older than the state held) before its transaction.

use stripe::{IdempotencyKey, RequestStrategy, StripeRequest as _};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior,
};
use stripe_billing::subscription::{
    RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_checkout::checkout_session::{CreateCheckoutSession, CreateCheckoutSessionLineItems};
use stripe_core::customer::CreateCustomer;

use crate::Billing;

/// A call to Stripe failed.
#[derive(Debug, thiserror::Error)]
pub enum StripeCallError {
    /// `PLATFORM_STRIPE_SECRET_KEY` is not set.
    #[error("billing through Stripe is not configured")]
    NotConfigured,
    #[error("the Stripe API call failed: {0}")]
    Api(#[from] stripe::StripeError),
    #[error("bad idempotency key")]
    Key,
}

/// How a plan change is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proration {
    /// Upgrade: prorated and invoiced at once (`always_invoice`).
    Now,
    /// Downgrade: no proration; the new price applies from the next period.
    AtPeriodEnd,
}

impl Proration {
    /// Stripe's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Now => "always_invoice",
            Self::AtPeriodEnd => "none",
        }
    }
}

/// The prorated amount of a plan change, before it is made.
#[derive(Clone, Debug)]
pub struct Preview {
    pub amount_due: i64,
    pub currency: String,
    pub proration: Proration,
}

fn idempotent(key: &str) -> Result<RequestStrategy, StripeCallError> {
    Ok(RequestStrategy::Idempotent(
        IdempotencyKey::new(key).map_err(|_| StripeCallError::Key)?,
    ))
}

impl Billing {
    /// The subscription as Stripe holds it now.
    pub async fn fetch_subscription(
        &self,
        id: &str,
    ) -> Result<stripe_shared::Subscription, StripeCallError> {
        Ok(RetrieveSubscription::new(id).send(self.stripe()?).await?)
    }

    /// A Stripe customer for the tenant (idempotent per tenant).
    pub(crate) async fn create_customer(
        &self,
        tenant: tenancy::ids::TenantId,
        email: &str,
        name: &str,
    ) -> Result<String, StripeCallError> {
        let c = CreateCustomer::new()
            .email(email)
            .name(name)
            .metadata([("tenant_id".to_owned(), tenant.to_string())])
            .customize()
            .request_strategy(idempotent(&format!("customer:{tenant}"))?)
            .send(self.stripe()?)
            .await?;
        Ok(c.id.as_str().to_owned())
    }

    /// A Checkout session in subscription mode for `price`; returns its URL.
    pub(crate) async fn checkout_session(
        &self,
        customer: &str,
        tenant: tenancy::ids::TenantId,
        price: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<String, StripeCallError> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.to_owned());
        item.quantity = Some(1);
        let s = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .customer(customer)
            .client_reference_id(tenant.to_string())
            .line_items(vec![item])
            .success_url(success_url)
            .cancel_url(cancel_url)
            .send(self.stripe()?)
            .await?;
        Ok(s.url.unwrap_or_default())
    }

    /// A Billing Portal session; returns its URL.
    pub(crate) async fn portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, StripeCallError> {
        let s = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url)
            .send(self.stripe()?)
            .await?;
        Ok(s.url)
    }

    /// Moves the subscription's item to `price`.
    pub(crate) async fn change_price(
        &self,
        subscription: &str,
        item: &str,
        price: &str,
        proration: Proration,
    ) -> Result<stripe_shared::Subscription, StripeCallError> {
        let mut it = UpdateSubscriptionItems::new();
        it.id = Some(item.to_owned());
        it.price = Some(price.to_owned());
        Ok(UpdateSubscription::new(subscription)
            .items(vec![it])
            .proration_behavior(match proration {
                Proration::Now => UpdateSubscriptionProrationBehavior::AlwaysInvoice,
                Proration::AtPeriodEnd => UpdateSubscriptionProrationBehavior::None,
            })
            .send(self.stripe()?)
            .await?)
    }

    /// The invoice a change to `price` would produce now.
    pub(crate) async fn preview_price(
        &self,
        customer: &str,
        subscription: &str,
        item: &str,
        price: &str,
        proration: Proration,
    ) -> Result<Preview, StripeCallError> {
        let mut it = CreatePreviewInvoiceSubscriptionDetailsItems::new();
        it.id = Some(item.to_owned());
        it.price = Some(price.to_owned());
        let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
        details.items = Some(vec![it]);
        details.proration_behavior = Some(match proration {
            Proration::Now => {
                CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice
            }
            Proration::AtPeriodEnd => {
                CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::None
            }
        });
        let inv = CreatePreviewInvoice::new()
            .customer(customer)
            .subscription(subscription)
            .subscription_details(details)
            .send(self.stripe()?)
            .await?;
        Ok(Preview {
            amount_due: inv.amount_due,
            currency: inv.currency.to_string(),
            proration,
        })
    }

    /// Reports `quantity` of the metered event for a customer, once per `identifier` (Stripe
    /// deduplicates meter events by identifier; the idempotency key covers the retried request).
    pub(crate) async fn report_meter_event(
        &self,
        event_name: &str,
        customer: &str,
        quantity: i64,
        identifier: &str,
        timestamp: i64,
    ) -> Result<(), StripeCallError> {
        stripe_billing::billing_meter_event::CreateBillingMeterEvent::new(
            event_name,
            std::collections::HashMap::from([
                ("stripe_customer_id".to_owned(), customer.to_owned()),
                ("value".to_owned(), quantity.to_string()),
            ]),
        )
        .identifier(identifier)
        .timestamp(timestamp)
        .customize()
        .request_strategy(idempotent(identifier)?)
        .send(self.stripe()?)
        .await?;
        Ok(())
    }

    /// One page of events created after `after` (Unix seconds), oldest first in the page's
    /// reverse order as Stripe lists them (newest first).
    pub(crate) async fn list_events(
        &self,
        after: i64,
        starting_after: Option<&str>,
    ) -> Result<stripe_types::List<stripe_shared::Event>, StripeCallError> {
        let mut req = stripe_core::event::ListEvent::new()
            .created(stripe_types::RangeQueryTs::gt(after))
            .limit(100);
        if let Some(s) = starting_after {
            req = req.starting_after(s);
        }
        Ok(req.send(self.stripe()?).await?)
    }
}
