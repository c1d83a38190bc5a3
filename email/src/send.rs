//! The `email.*` job handler. A message's id is its job's id, so every run of a job (a retry, a
//! run after a lost lease) finds what earlier runs did:
//!
//! 1. already `sent` or `suppressed` → nothing to do;
//! 2. `sending` (an earlier run was cut off mid-call) → ask the provider whether it has the
//!    message (by the id in its `Metadata`); if so, record it as sent;
//! 3. the suppression list withholds it → recorded `suppressed`, nothing leaves;
//! 4. else render, sign, record `sending` (committed), send, record `sent` (committed on its own,
//!    so a completion that fails afterwards cannot make the next run send again).

use std::collections::BTreeMap;
use std::time::Duration;

use jobs::{JobContext, JobFailure, KindSpec, Registry};
use serde_json::json;
use tenancy::ids::EmailAddress;

use crate::kinds::{Category, KINDS, Kind};
use crate::store::{self, About};
use crate::transport::{SendError, Via};
use crate::{Mailer, compose, unsubscribe};

/// Every email kind's limits: provider retries and a failover fit in the lease.
#[must_use]
pub fn spec() -> KindSpec {
    KindSpec {
        max_attempts: 8,
        lease: Duration::from_secs(180),
        ..KindSpec::default()
    }
}

/// Registers the handler of every email kind in `r`.
#[must_use]
pub fn register(mut r: Registry, mailer: &Mailer) -> Registry {
    for k in KINDS {
        let m = mailer.clone();
        r = r.with(&k.job_kind(), spec(), move |mut ctx: JobContext| {
            let m = m.clone();
            async move {
                let r = m.deliver(&mut ctx).await;
                (ctx, r)
            }
        });
    }
    r
}

fn fail(what: &str) -> impl Fn(&dyn std::fmt::Display) -> JobFailure + '_ {
    move |e| JobFailure(format!("{what}: {e}"))
}

/// The action link in an identity message body (`Label: https://…`).
fn link_in(body: &str) -> Option<String> {
    body.split_whitespace()
        .find(|w| w.starts_with("https://") || w.starts_with("http://"))
        .map(str::to_owned)
}

impl Mailer {
    /// Runs one email job.
    pub async fn deliver(&self, ctx: &mut JobContext) -> Result<(), JobFailure> {
        let kind = Kind::find(ctx.kind.as_str())
            .ok_or_else(|| JobFailure(format!("no email kind `{}`", ctx.kind)))?;
        let recipient = ctx
            .payload
            .get("recipient")
            .and_then(|v| v.as_str())
            .and_then(|r| EmailAddress::parse(r).ok())
            .ok_or_else(|| JobFailure("the job has no valid `recipient`".into()))?;
        let about = About {
            id: ctx.id.as_uuid(),
            kind: kind.name,
            category: kind.category,
            recipient: recipient.as_str(),
        };
        let tenant = self
            .inner
            .resolver
            .tenant(ctx.tenant)
            .await
            .map_err(|e| fail("looking the tenant up")(&e))?
            .ok_or_else(|| JobFailure("the tenant is gone".into()))?;
        let transports = self.inner.transports.clone();
        let provider = transports
            .provider
            .as_ref()
            .map(|p| p.for_tenant(ctx.tenant));

        match store::message(&mut ctx.tx, about.id).await? {
            Some(m) if m.status == "sent" || m.status == "suppressed" => {
                tracing::info!(tenant.id = %ctx.tenant, email.id = %about.id, "email already handled");
                return Ok(());
            }
            Some(m) if m.status == "sending" && m.transport.as_deref() == Some("provider") => {
                if let Some(p) = &provider
                    && let Ok(Some(pid)) = p.find(about.id).await
                {
                    tracing::info!(tenant.id = %ctx.tenant, email.id = %about.id, "the provider has the email from an earlier run");
                    self.record_apart(&tenant, about, Via::Provider, &pid)
                        .await?;
                    return Ok(());
                }
            }
            _ => {}
        }

        if let Some(reason) = store::suppressed(&mut ctx.tx, about.recipient, kind.category).await?
        {
            tracing::info!(tenant.id = %ctx.tenant, email.id = %about.id, reason, "email suppressed");
            store::record(
                &mut ctx.tx,
                about,
                "suppressed",
                None,
                None,
                json!({ "reason": reason }),
            )
            .await?;
            return Ok(());
        }

        // What the template gets: the payload's `vars`, and the link from a sealed body.
        let mut vars: BTreeMap<String, String> = ctx
            .payload
            .get("vars")
            .and_then(|v| v.as_object())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let s = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        (k.clone(), s)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(body) = ctx
            .secret()
            .await
            .map_err(|e| fail("opening the message")(&e))?
            && let Some(link) = link_in(body.expose())
        {
            vars.insert("link".into(), link);
        }
        let locale = match store::locale(&mut ctx.tx, about.recipient).await? {
            Some(l) => Some(l),
            None => ctx
                .payload
                .get("locale")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        };
        let brand = store::branding(&mut ctx.tx, &tenant.name).await?;
        let unsubscribe_url = if kind.category.unsubscribable() {
            let key = self
                .unsubscribe_key()
                .await
                .map_err(|e| fail("the unsubscribe key")(&e))?;
            let token = unsubscribe::sign(
                key,
                &unsubscribe::Unsubscribe {
                    tenant: ctx.tenant,
                    category: kind.category,
                    recipient: about.recipient.to_owned(),
                },
            );
            Some(format!(
                "https://{}.{}/u/{token}",
                tenant.slug.as_str(),
                self.inner.resolver.base_domain().as_str()
            ))
        } else {
            None
        };
        let mut rendered = self
            .inner
            .templates
            .render(
                kind.name,
                locale.as_deref(),
                &brand,
                &vars,
                unsubscribe_url.as_deref(),
            )
            .map_err(|e| fail("rendering")(&e))?;
        // Open tracking, where the tenant enabled it: the HTML ends with the message's image.
        if crate::tracking::enabled(&mut ctx.tx).await? {
            let token = self
                .open_token(ctx.tenant, about.id)
                .await
                .map_err(|e| fail("the tracking key")(&e))?;
            rendered.html = crate::tracking::with_pixel(
                &rendered.html,
                &format!(
                    "https://{}.{}/o/{token}",
                    tenant.slug.as_str(),
                    self.inner.resolver.base_domain().as_str()
                ),
            );
        }
        // The tenant's verified sending domain signs and sends, else the platform's.
        let tenant_signer = self
            .tenant_signer(&mut ctx.tx)
            .await
            .map_err(|e| fail("the tenant's DKIM key")(&e))?;
        let platform_signer;
        let (signer, from) = match &tenant_signer {
            Some((s, from)) => (s, from.as_str()),
            None => {
                platform_signer = self.signer().await.map_err(|e| fail("the DKIM key")(&e))?;
                (&*platform_signer, self.inner.settings.from.as_str())
            }
        };
        let outgoing = compose::compose(
            about.id,
            &brand.name,
            from,
            about.recipient,
            &rendered,
            unsubscribe_url.as_deref(),
            signer,
        )
        .map_err(|e| fail("composing")(&e))?;

        // `sending`, committed before the call: a run cut off after the provider accepted the
        // message finds it and asks the provider instead of sending again.
        if let Some(mut tx) = self
            .begin(ctx.tenant)
            .await
            .map_err(|e| fail("recording")(&e))?
        {
            store::record(
                &mut tx,
                about,
                "sending",
                Some(transports.first().as_str()),
                None,
                json!({}),
            )
            .await?;
            tx.commit().await?;
        }
        let transports = crate::transport::Transports {
            provider,
            ..transports
        };
        match transports.send(&outgoing).await {
            Ok(a) => {
                tracing::info!(tenant.id = %ctx.tenant, email.id = %about.id, via = a.via.as_str(), "email sent");
                self.record_apart(&tenant, about, a.via, &a.provider_message_id)
                    .await
            }
            Err(SendError::Inactive(detail)) => {
                tracing::info!(tenant.id = %ctx.tenant, email.id = %about.id, "the provider refuses the recipient");
                store::record(
                    &mut ctx.tx,
                    about,
                    "suppressed",
                    None,
                    None,
                    json!({ "reason": "inactive at the provider", "detail": detail }),
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(fail("sending")(&e)),
        }
    }

    /// Records the message as sent in a transaction of its own (committed now, whatever becomes
    /// of the job's).
    async fn record_apart(
        &self,
        tenant: &tenancy::catalog::Tenant,
        about: About<'_>,
        via: Via,
        provider_message_id: &str,
    ) -> Result<(), JobFailure> {
        let mut tx = self
            .inner
            .dataplane
            .connect(tenant)
            .await
            .map_err(|e| fail("recording the send")(&e))?
            .begin();
        store::record(
            &mut tx,
            about,
            "sent",
            Some(via.as_str()),
            Some(provider_message_id),
            json!({ "transport": via.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Whether the category of `kind` may carry a one-click unsubscribe (for callers listing kinds).
#[must_use]
pub fn unsubscribable(kind: &str) -> bool {
    Kind::find(kind)
        .is_some_and(|k| k.category.unsubscribable() && k.category != Category::Security)
}
