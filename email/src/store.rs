//! The tenant tables of email (tenant V12): messages (one per email job), their events, the
//! suppression list, the tenant's branding, users' locales. Every statement runs in a tenant
//! transaction (RLS).

use serde::Serialize;
use tenancy::dataplane::TenantTx;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::kinds::Category;
use crate::templates::Branding;

/// Why an address is suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    HardBounce,
    Complaint,
    Unsubscribe,
    Manual,
}

impl Reason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
            Self::Manual => "manual",
        }
    }
}

/// The status a message has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub status: String,
    pub transport: Option<String>,
    pub provider_message_id: Option<String>,
}

/// The message `id` as recorded, if any.
pub async fn message(
    tx: &mut TenantTx,
    id: Uuid,
) -> Result<Option<MessageRow>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT status, transport, provider_message_id FROM email_messages WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|r| MessageRow {
            status: r.get(0),
            transport: r.get(1),
            provider_message_id: r.get(2),
        }))
}

/// What a message is about, for [`record`].
#[derive(Clone, Copy, Debug)]
pub struct About<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub category: Category,
    pub recipient: &'a str,
}

/// Records the message's status (and, unless `sending`, its event).
pub async fn record(
    tx: &mut TenantTx,
    m: About<'_>,
    status: &str,
    transport: Option<&str>,
    provider_message_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO email_messages (tenant_id, id, kind, category, recipient, status, transport,
                                     provider_message_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = EXCLUDED.status,
             transport = EXCLUDED.transport, provider_message_id = EXCLUDED.provider_message_id,
             updated_at = now()",
        &[
            &tx.tenant().as_uuid(),
            &m.id,
            &m.kind,
            &m.category.as_str(),
            &m.recipient,
            &status,
            &transport,
            &provider_message_id,
        ],
    )
    .await?;
    if status != "sending" {
        event(tx, Some(m.id), m.recipient, status, None, detail).await?;
    }
    Ok(())
}

/// Appends an event; `false` if an event with the same provider id exists (a replay).
pub async fn event(
    tx: &mut TenantTx,
    message: Option<Uuid>,
    recipient: &str,
    kind: &str,
    provider_event_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<bool, tokio_postgres::Error> {
    let n = tx
        .execute(
            "INSERT INTO email_events (tenant_id, id, message_id, recipient, type,
                                       provider_event_id, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &tx.tenant().as_uuid(),
                &Uuid::now_v7(),
                &message,
                &recipient,
                &kind,
                &provider_event_id,
                &detail,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Why `recipient` must not get mail of `category`, if it must not: a hard bounce, a complaint
/// or a manual entry withholds everything; an unsubscribe withholds its own category only, and
/// never security mail.
pub async fn suppressed(
    tx: &mut TenantTx,
    recipient: &str,
    category: Category,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT reason FROM email_suppressions
             WHERE recipient = lower($1)
               AND (category = '*' OR (category = $2 AND $2 <> 'security'))
             ORDER BY reason LIMIT 1",
            &[&recipient, &category.as_str()],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Adds `recipient` to the suppression list (idempotent). An unsubscribe from security mail is
/// refused (`false`).
pub async fn suppress(
    tx: &mut TenantTx,
    recipient: &str,
    reason: Reason,
    category: Option<Category>,
) -> Result<bool, tokio_postgres::Error> {
    if reason == Reason::Unsubscribe && matches!(category, None | Some(Category::Security)) {
        return Ok(false);
    }
    let category = category.map_or("*", Category::as_str);
    tx.execute(
        "INSERT INTO email_suppressions (tenant_id, id, recipient, reason, category)
         VALUES ($1, $2, lower($3), $4, $5) ON CONFLICT DO NOTHING",
        &[
            &tx.tenant().as_uuid(),
            &Uuid::now_v7(),
            &recipient,
            &reason.as_str(),
            &category,
        ],
    )
    .await?;
    Ok(true)
}

/// A suppression as listed.
#[derive(Clone, Debug, Serialize)]
pub struct Suppression {
    pub id: Uuid,
    pub recipient: String,
    pub reason: String,
    pub category: String,
    pub created_at: OffsetDateTime,
}

/// Suppressions, oldest first, one page (optionally for one address).
pub async fn suppressions(
    tx: &mut TenantTx,
    recipient: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Suppression>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT id, recipient, reason, category, created_at FROM email_suppressions
             WHERE ($1::text IS NULL OR recipient = lower($1)) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
            &[&recipient, &after, &limit],
        )
        .await?
        .iter()
        .map(|r| Suppression {
            id: r.get(0),
            recipient: r.get(1),
            reason: r.get(2),
            category: r.get(3),
            created_at: r.get(4),
        })
        .collect())
}

/// Removes a suppression (audited by the table's trigger, with the request's actor).
pub async fn unsuppress(tx: &mut TenantTx, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .execute("DELETE FROM email_suppressions WHERE id = $1", &[&id])
        .await?
        == 1)
}

/// An event as listed.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub message_id: Option<Uuid>,
    pub recipient: String,
    pub kind: String,
    pub detail: serde_json::Value,
    pub occurred_at: OffsetDateTime,
}

/// Events, oldest first, one page (optionally of one message or one address).
pub async fn events(
    tx: &mut TenantTx,
    message: Option<Uuid>,
    recipient: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Event>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT id, message_id, recipient, type, detail, occurred_at FROM email_events
             WHERE ($1::uuid IS NULL OR message_id = $1)
               AND ($2::text IS NULL OR recipient = lower($2))
               AND ($3::uuid IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
            &[&message, &recipient, &after, &limit],
        )
        .await?
        .iter()
        .map(|r| Event {
            id: r.get(0),
            message_id: r.get(1),
            recipient: r.get(2),
            kind: r.get(3),
            detail: r.get(4),
            occurred_at: r.get(5),
        })
        .collect())
}

/// The tenant's branding (its name from the catalog).
pub async fn branding(tx: &mut TenantTx, name: &str) -> Result<Branding, tokio_postgres::Error> {
    let mut b = Branding::named(name);
    if let Some(r) = tx
        .query_opt("SELECT logo_url, primary_color FROM email_branding", &[])
        .await?
    {
        b.logo_url = r.get(0);
        if let Some(c) = r.get::<_, Option<String>>(1) {
            b.color = c;
        }
    }
    Ok(b)
}

/// Sets the tenant's branding.
pub async fn set_branding(
    tx: &mut TenantTx,
    logo_url: Option<&str>,
    primary_color: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO email_branding (tenant_id, logo_url, primary_color) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id) DO UPDATE SET logo_url = EXCLUDED.logo_url,
             primary_color = EXCLUDED.primary_color, updated_at = now()",
        &[&tx.tenant().as_uuid(), &logo_url, &primary_color],
    )
    .await?;
    Ok(())
}

/// The locale of the user with address `recipient`, if one is set.
pub async fn locale(
    tx: &mut TenantTx,
    recipient: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT locale FROM users WHERE lower(email) = lower($1)",
            &[&recipient],
        )
        .await?
        .and_then(|r| r.get(0)))
}

/// Sets (or, with `None`, clears) the locale of user `user` (the user's own choice, `PATCH
/// /api/v1/me`); `false` if there is no such user.
pub async fn set_user_locale(
    tx: &mut TenantTx,
    user: Uuid,
    locale: Option<&crate::locale::Locale>,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .execute(
            "UPDATE users SET locale = $2, updated_at = now() WHERE id = $1",
            &[&user, &locale.map(crate::locale::Locale::as_str)],
        )
        .await?
        == 1)
}

/// The locale user `user` chose, if any.
pub async fn user_locale(
    tx: &mut TenantTx,
    user: Uuid,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(tx
        .query_opt("SELECT locale FROM users WHERE id = $1", &[&user])
        .await?
        .and_then(|r| r.get(0)))
}
