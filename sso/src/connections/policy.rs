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

/// How the tenant's policy treats a password login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordLogin {
    /// The tenant does not enforce SSO.
    Open,
    /// The tenant enforces SSO; `exempt` when the account is an owner's (break-glass).
    SsoEnforced { exempt: bool },
}

impl PasswordLogin {
    /// Whether a login whose password check gave `password_ok` is refused by the policy. With
    /// SSO enforced every refusal looks the same, so it never tells whether the password was
    /// right or whether the account exists or is an owner's.
    #[must_use]
    pub fn refuses(self, password_ok: bool) -> bool {
        match self {
            Self::Open => false,
            Self::SsoEnforced { exempt } => !(exempt && password_ok),
        }
    }
}

/// How the policy treats a password login to `user` (`None`: no such account): always allowed
/// unless the tenant enforces SSO, and then only for owners (break-glass).
pub async fn password_login(
    tx: &mut TenantTx,
    user: Option<tenancy::ids::UserId>,
) -> Result<PasswordLogin, SsoError> {
    if !enforce_sso(tx).await? {
        return Ok(PasswordLogin::Open);
    }
    let role = match user {
        Some(u) => identity::users::get(tx, u).await?.map(|u| u.role),
        None => None,
    };
    Ok(PasswordLogin::SsoEnforced {
        exempt: role.as_deref() == Some("owner"),
    })
}
