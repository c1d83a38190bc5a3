//! From a verified identity to a user of the tenant. The identity's email must be in a verified
//! domain of the tenant; an identity already linked to a user signs that user in; otherwise an
//! existing account is linked only under the rule of [`check_link`] (never a silent takeover);
//! otherwise a user is created just in time with the mapped role or the connection's default
//! role. A user with TOTP still gives a code unless the connection enforces MFA, and a first link
//! to such a user waits for that code. Roles are re-mapped at every login, never for owners.
//! Also the explicit admin link and the security-event helper every refusal goes through.

use std::collections::BTreeMap;

use identity::permissions::role_by_name;
use identity::{AuthChange, users};
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

/// Where a verified identity leads.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The user is signed in: issue tokens.
    Session(UserId),
    /// The user's own TOTP is still needed. `detail` goes into the `mfa_token`; once the code is
    /// proved, [`after_mfa`] links the identity (a first link) and applies the mapped role.
    Mfa { user: UserId, detail: Value },
}

/// Finds, links or creates the user for `id` (inside `tx`). `verified_domains`: the tenant's
/// verified email domains; an identity whose email is outside them is refused, whether it is
/// linked already or not (docs/sso.md, "Linking policy"). `seats`: the tenant's seat limit, for a
/// user created just in time. A role re-mapped on the way is returned as the change to hand to
/// `Auth::changed` after the commit.
pub async fn user_for(
    tx: &mut TenantTx,
    conn: &Connection,
    id: &Asserted,
    verified_domains: &[String],
    seats: identity::seats::Seats,
) -> Result<(Outcome, &'static str, Option<AuthChange>), SsoError> {
    let email = id
        .email
        .as_deref()
        .ok_or_else(|| SsoError::rejected(Rejection::NoEmail, "no email in the identity"))?;
    let email = users::parse_email(email)
        .map_err(|_| SsoError::rejected(Rejection::NoEmail, "the email is not an address"))?;
    if !crate::domains::covers(verified_domains, email.as_str()) {
        return Err(SsoError::rejected(
            Rejection::UnverifiedDomain,
            format!(
                "{} asserted an address in `{}`, which is not a verified domain of the tenant",
                conn.name,
                email.domain()
            ),
        ));
    }
    let mapped = mapped_role(conn, id);
    let linked: Option<UserId> = tx
        .query_opt(
            "UPDATE sso_identities SET last_login_at = now()
             WHERE connection_id = $1 AND subject = $2 RETURNING user_id",
            &[&conn.id.as_uuid(), &id.subject],
        )
        .await?
        .map(|r| UserId::from_uuid(r.get(0)));
    if let Some(user) = linked {
        let totp = users::get(tx, user).await?.is_some_and(|u| u.mfa_enabled);
        // An identity linked before still never skips the user's own TOTP, unless the
        // connection is marked as enforcing MFA at the IdP.
        if totp && !conn.enforces_mfa {
            return Ok((
                pending(user, conn, None, mapped.as_deref()),
                "linked_mfa",
                None,
            ));
        }
        let change = remap(tx, user, mapped.as_deref()).await?;
        return Ok((Outcome::Session(user), "linked", change));
    }
    match users::credentials(tx, &email).await? {
        Some((existing, _, totp)) => {
            check_link(tx, conn, id, existing, verified_domains).await?;
            // A first link to an account with TOTP waits for the account's own code, even on a
            // connection that enforces MFA: the link itself is what the code must confirm.
            if totp {
                let p = pending(existing, conn, Some(&id.subject), mapped.as_deref());
                return Ok((p, "link_mfa", None));
            }
            insert_identity(tx, conn.id.as_uuid(), &id.subject, existing).await?;
            let change = remap(tx, existing, mapped.as_deref()).await?;
            Ok((Outcome::Session(existing), "link", change))
        }
        None => {
            let role_name = mapped.unwrap_or_else(|| conn.default_role.clone());
            let role = role_by_name(tx, &role_name).await?.ok_or_else(|| {
                SsoError::Invalid(format!(
                    "the connection's role `{role_name}` no longer exists"
                ))
            })?;
            let name = id.name.clone().unwrap_or_else(|| email.as_str().to_owned());
            let user = users::create(tx, seats, &email, &name, NO_PASSWORD, role).await?;
            if id.email_verified {
                users::mark_verified(tx, user).await?;
            }
            insert_identity(tx, conn.id.as_uuid(), &id.subject, user).await?;
            Ok((Outcome::Session(user), "created", None))
        }
    }
}

fn pending(user: UserId, conn: &Connection, link: Option<&str>, role: Option<&str>) -> Outcome {
    Outcome::Mfa {
        user,
        detail: json!({ "sso": {
            "connection_id": conn.id.to_string(),
            "link_subject": link,
            "role": role,
        }}),
    }
}

async fn insert_identity(
    tx: &mut TenantTx,
    connection: uuid::Uuid,
    subject: &str,
    user: UserId,
) -> Result<u64, SsoError> {
    // Only while the connection exists (a pending link may outlive it); an identity already
    // linked stays with its user.
    Ok(tx
        .execute(
            "INSERT INTO sso_identities (tenant_id, connection_id, subject, user_id)
             SELECT $1, c.id, $3, $4 FROM sso_connections c WHERE c.id = $2
             ON CONFLICT DO NOTHING",
            &[
                &tx.tenant().as_uuid(),
                &connection,
                &subject,
                &user.as_uuid(),
            ],
        )
        .await?)
}

/// Sets the mapped role at login (never for an owner; a mapping never names `owner`); the change,
/// if the role changed, is for `Auth::changed` after the commit.
async fn remap(
    tx: &mut TenantTx,
    user: UserId,
    mapped: Option<&str>,
) -> Result<Option<AuthChange>, SsoError> {
    let Some(role_name) = mapped else {
        return Ok(None);
    };
    let current = users::get(tx, user).await?.map(|u| u.role);
    if current.as_deref() != Some("owner")
        && current.as_deref() != Some(role_name)
        && let Some(role) = role_by_name(tx, role_name).await?
    {
        return Ok(Some(users::set_role(tx, user, role).await?));
    }
    Ok(None)
}

/// Completes an SSO login that waited for the user's TOTP (`detail` of the `mfa_token`): links
/// the identity if this was a first link, and applies the mapped role. Nothing for a password
/// login's token. A re-mapped role is returned as the change for `Auth::changed` after the commit.
pub async fn after_mfa(
    tx: &mut TenantTx,
    user: UserId,
    detail: &Value,
) -> Result<Option<AuthChange>, SsoError> {
    let Some(sso) = detail.get("sso") else {
        return Ok(None);
    };
    let connection = sso
        .get("connection_id")
        .and_then(Value::as_str)
        .and_then(|c| uuid::Uuid::parse_str(c).ok());
    if let (Some(connection), Some(subject)) =
        (connection, sso.get("link_subject").and_then(Value::as_str))
    {
        insert_identity(tx, connection, subject, user).await?;
    }
    remap(tx, user, sso.get("role").and_then(Value::as_str)).await
}

/// An admin links the identity `subject` of connection `conn` to `user` explicitly (the way past
/// a refused automatic link). The grantor must be able to give the user's role (the grant rule:
/// whoever holds the identity gets the user's access), so only an owner links an owner.
/// `Ok(false)`: the identity was linked to this user already.
pub async fn link(
    tx: &mut TenantTx,
    grantor: &identity::Grantor<'_>,
    conn: crate::connections::ConnectionId,
    subject: &str,
    user: UserId,
) -> Result<bool, SsoError> {
    crate::connections::get(tx, conn)
        .await?
        .ok_or(SsoError::NoSuchConnection("no such SSO connection"))?;
    let u = users::get(tx, user)
        .await?
        .ok_or(SsoError::NoSuchConnection("no such user"))?;
    identity::grants::grantable_role(tx, grantor, &u.role).await?;
    if insert_identity(tx, conn.as_uuid(), subject, user).await? == 1 {
        return Ok(true);
    }
    let holder: Option<uuid::Uuid> = tx
        .query_opt(
            "SELECT user_id FROM sso_identities WHERE connection_id = $1 AND subject = $2",
            &[&conn.as_uuid(), &subject],
        )
        .await?
        .map(|r| r.get(0));
    if holder == Some(user.as_uuid()) {
        Ok(false)
    } else {
        Err(SsoError::IdentityTaken)
    }
}

/// Removes the links of `user` through connection `conn`; how many there were.
pub async fn unlink(
    tx: &mut TenantTx,
    conn: crate::connections::ConnectionId,
    user: UserId,
) -> Result<u64, SsoError> {
    Ok(tx
        .execute(
            "DELETE FROM sso_identities WHERE connection_id = $1 AND user_id = $2",
            &[&conn.as_uuid(), &user.as_uuid()],
        )
        .await?)
}

/// An identity linked to a user.
#[derive(Clone, Debug)]
pub struct Link {
    pub subject: String,
    pub user: UserId,
    pub created_at: time::OffsetDateTime,
    pub last_login_at: time::OffsetDateTime,
}

/// The identities linked through `conn`, oldest first (at most `limit`).
pub async fn links(
    tx: &mut TenantTx,
    conn: crate::connections::ConnectionId,
    limit: i64,
) -> Result<Vec<Link>, SsoError> {
    Ok(tx
        .query(
            "SELECT subject, user_id, created_at, last_login_at FROM sso_identities
             WHERE connection_id = $1 ORDER BY created_at, subject LIMIT $2",
            &[&conn.as_uuid(), &limit],
        )
        .await?
        .iter()
        .map(|r| Link {
            subject: r.get(0),
            user: UserId::from_uuid(r.get(1)),
            created_at: r.get(2),
            last_login_at: r.get(3),
        })
        .collect())
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
/// the account's address is in a verified domain of the tenant, and the account is not an
/// owner's. Anything else is refused (`link_refused`); an admin can link explicitly. (An account
/// with TOTP is linked only once its own code is given: see [`user_for`].)
async fn check_link(
    tx: &mut TenantTx,
    conn: &Connection,
    id: &Asserted,
    existing: UserId,
    verified_domains: &[String],
) -> Result<(), SsoError> {
    let user = users::get(tx, existing).await?;
    let why = match user {
        _ if !id.email_verified => "the identity provider did not verify the email",
        None => "the account is gone",
        Some(u) if !u.email_verified => "the account never verified its email",
        Some(u) if !crate::domains::covers(verified_domains, &u.email) => {
            "the account's email is not in a verified domain"
        }
        Some(u) if u.role == "owner" => "owners are never linked automatically",
        Some(_) => return Ok(()),
    };
    Err(SsoError::rejected(
        Rejection::LinkRefused,
        format!("an account exists for this email and {}: {why}", conn.name),
    ))
}
