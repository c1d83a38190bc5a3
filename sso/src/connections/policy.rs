//! The tenant's SSO policy: whether it enforces SSO, and so whether a user may still sign in with
//! a password (owners always may, for break-glass).

use tenancy::dataplane::TenantTx;

use crate::SsoError;

/// Whether the tenant refuses password login for everyone but owners.
pub async fn enforce_sso(tx: &mut TenantTx) -> Result<bool, SsoError> {
    Ok(tx
        .query_opt("SELECT enforce_sso FROM sso_settings", &[])
        .await?
        .is_some_and(|r| r.get(0)))
}

/// Sets the tenant's SSO policy.
pub async fn set_enforce_sso(tx: &mut TenantTx, on: bool) -> Result<(), SsoError> {
    if on {
        let any: bool = tx
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM sso_connections WHERE enabled)",
                &[],
            )
            .await?
            .is_some_and(|r| r.get(0));
        if !any {
            return Err(SsoError::Invalid(
                "enforcing SSO needs at least one enabled connection".into(),
            ));
        }
    }
    tx.execute(
        "INSERT INTO sso_settings (tenant_id, enforce_sso) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET enforce_sso = EXCLUDED.enforce_sso, updated_at = now()",
        &[&tx.tenant().as_uuid(), &on],
    )
    .await?;
    Ok(())
}

/// Whether `user` may sign in with a password: always, unless the tenant enforces SSO and the
/// user is not an owner (owners keep password login for break-glass).
pub async fn password_login_allowed(
    tx: &mut TenantTx,
    user: tenancy::ids::UserId,
) -> Result<bool, SsoError> {
    if !enforce_sso(tx).await? {
        return Ok(true);
    }
    let role = identity::users::get(tx, user).await?.map(|u| u.role);
    Ok(role.as_deref() == Some("owner"))
}
