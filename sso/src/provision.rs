//! From a verified identity to a user of the tenant: an identity already linked to a user signs
//! that user in; otherwise an existing account is linked only when the IdP vouches for the email
//! (never a silent takeover); otherwise a user is created just in time with the mapped role or
//! the connection's default role. Roles are re-mapped at every login, never for owners. Also the
//! security-event helper every refusal goes through.

use std::collections::BTreeMap;

use identity::permissions::role_by_name;
use identity::users;
use serde_json::{Value, json};
use tenancy::catalog::Tenant;
use tenancy::dataplane::TenantTx;
use tenancy::ids::UserId;

use crate::connections::Connection;
use crate::{Rejection, SsoError};

/// Stored as the password hash of users made by SSO: not a PHC string, so no password matches.
const NO_PASSWORD: &str = "!sso";

/// Who the identity provider says the user is (only from verified content).
#[derive(Clone, Debug, Default)]
pub struct Asserted {
    /// The IdP's stable subject (SAML NameID, OIDC `sub`).
    pub subject: String,
    pub email: Option<String>,
    /// Whether the IdP vouches that the user controls `email`.
    pub email_verified: bool,
    pub name: Option<String>,
    /// Attributes / claims by name, for role mapping.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// The role the identity's attributes map to (first matching rule), if any.
#[must_use]
pub fn mapped_role(conn: &Connection, id: &Asserted) -> Option<String> {
    let attr = conn.role_attribute.as_deref()?;
    let values = id.attributes.get(attr)?;
    conn.role_mapping
        .iter()
        .find(|rule| values.iter().any(|v| v == &rule.value))
        .map(|rule| rule.role.clone())
}

/// Finds, links or creates the user for `id` (inside `tx`).
pub async fn user_for(
    tx: &mut TenantTx,
    conn: &Connection,
    id: &Asserted,
) -> Result<(UserId, &'static str), SsoError> {
    let mapped = mapped_role(conn, id);
    let linked: Option<UserId> = tx
        .query_opt(
            "UPDATE sso_identities SET last_login_at = now()
             WHERE connection_id = $1 AND subject = $2 RETURNING user_id",
            &[&conn.id.as_uuid(), &id.subject],
        )
        .await?
        .map(|r| UserId::from_uuid(r.get(0)));
    let (user, how) = if let Some(u) = linked {
        (u, "linked")
    } else {
        let email = id
            .email
            .as_deref()
            .ok_or_else(|| SsoError::rejected(Rejection::NoEmail, "no email in the identity"))?;
        let email = users::parse_email(email)
            .map_err(|_| SsoError::rejected(Rejection::NoEmail, "the email is not an address"))?;
        let (user, how) = match users::credentials(tx, &email).await? {
            Some((existing, _, totp)) => {
                check_link(tx, conn, id, existing, totp).await?;
                (existing, "link")
            }
            None => {
                let role_name = mapped.clone().unwrap_or_else(|| conn.default_role.clone());
                let role = role_by_name(tx, &role_name).await?.ok_or_else(|| {
                    SsoError::Invalid(format!(
                        "the connection's role `{role_name}` no longer exists"
                    ))
                })?;
                let name = id.name.clone().unwrap_or_else(|| email.as_str().to_owned());
                let user = users::create(tx, &email, &name, NO_PASSWORD, role).await?;
                if id.email_verified {
                    users::mark_verified(tx, user).await?;
                }
                (user, "created")
            }
        };
        tx.execute(
            "INSERT INTO sso_identities (tenant_id, connection_id, subject, user_id) VALUES ($1, $2, $3, $4)",
            &[&tx.tenant().as_uuid(), &conn.id.as_uuid(), &id.subject, &user.as_uuid()],
        )
        .await?;
        (user, how)
    };
    if how != "created"
        && let Some(role_name) = mapped
    {
        let current = users::get(tx, user).await?.map(|u| u.role);
        if current.as_deref() != Some("owner")
            && current.as_deref() != Some(role_name.as_str())
            && let Some(role) = role_by_name(tx, &role_name).await?
        {
            users::set_role(tx, user, role).await?;
        }
    }
    Ok((user, how))
}

/// Records a security event of the tenant in its own transaction (a failure is logged: the
/// refusal stands either way).
pub async fn record(
    t: &identity::Identity,
    tenant: &Tenant,
    kind: &str,
    user: Option<UserId>,
    detail: Value,
) {
    let result = async {
        let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
        users::security_event(&mut tx, kind, user, None, detail).await?;
        tx.commit().await?;
        Ok::<(), SsoError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(tenant.id = %tenant.id, error = %e, kind, "could not record a security event");
    }
}

/// Records the refusal as an `sso.rejected` event and hands the error back.
pub async fn refuse(
    t: &identity::Identity,
    tenant: &Tenant,
    conn: Option<&Connection>,
    e: SsoError,
) -> SsoError {
    if let SsoError::Rejected { reason, detail } = &e {
        tracing::info!(tenant.id = %tenant.id, reason = reason.as_str(), "SSO login refused");
        record(
            t,
            tenant,
            "sso.rejected",
            None,
            json!({
                "reason": reason.as_str(),
                "detail": detail.chars().take(500).collect::<String>(),
                "connection_id": conn.map(|c| c.id.to_string()),
            }),
        )
        .await;
    }
    e
}

/// The automatic linking rule (docs/sso.md, "Accounts"): an identity links to an existing
/// account only if the IdP vouches for the email, the account proved the same address itself,
/// the account is not an owner's, and linking would not skip the account's own second factor.
/// Anything else is refused (`link_refused`); an admin can link explicitly.
async fn check_link(
    tx: &mut TenantTx,
    conn: &Connection,
    id: &Asserted,
    existing: UserId,
    totp: bool,
) -> Result<(), SsoError> {
    let user = users::get(tx, existing).await?;
    let why = match user {
        _ if !id.email_verified => "the identity provider did not verify the email",
        None => "the account is gone",
        Some(u) if !u.email_verified => "the account never verified its email",
        Some(u) if u.role == "owner" => "owners are never linked automatically",
        Some(_) if totp => "the account has its own second factor",
        Some(_) => return Ok(()),
    };
    Err(SsoError::rejected(
        Rejection::LinkRefused,
        format!("an account exists for this email and {}: {why}", conn.name),
    ))
}
