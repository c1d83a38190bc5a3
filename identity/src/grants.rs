//! The one rule for every way a role reaches a principal: a user's role, a custom role's
//! permissions, an API key's role, an invitation's role, an SSO connection's default role and
//! role mapping. The actor may give only a role whose permissions it holds itself, and only an
//! owner gives (or takes away) `owner`. The operator is exempt: it makes a tenant's first owner.
//! Handlers never compare role names or permission sets themselves; they call this module.

use tenancy::dataplane::TenantTx;
use tenancy::ids::RoleId;

use crate::AuthError;
use crate::permissions::{Permission, PermissionSet};

/// The role held only by a tenant's owners.
pub const OWNER: &str = "owner";

/// The least-privileged built-in role: what an API key acts with when its creator names none.
pub const LEAST_PRIVILEGED: &str = "viewer";

/// Who is giving a role.
#[derive(Clone, Copy, Debug)]
pub enum Grantor<'a> {
    /// The platform operator (admin API).
    Operator,
    /// A tenant principal (user or API key) acting with its role.
    Principal {
        role: &'a str,
        permissions: &'a PermissionSet,
    },
}

impl Grantor<'_> {
    /// Refuses a set of permissions the grantor does not hold (a custom role's definition).
    pub fn check_permissions(&self, permissions: &[Permission]) -> Result<(), AuthError> {
        let set: PermissionSet = permissions.iter().copied().collect();
        self.check(None, &set)
    }

    /// Refuses the role `name` with `permissions` unless the grantor may give it.
    fn check(&self, name: Option<&str>, permissions: &PermissionSet) -> Result<(), AuthError> {
        let Self::Principal {
            role,
            permissions: held,
        } = self
        else {
            return Ok(());
        };
        if name == Some(OWNER) && *role != OWNER {
            return Err(AuthError::OwnerOnly);
        }
        if !permissions.is_subset(held) {
            return Err(AuthError::NotGrantable);
        }
        Ok(())
    }
}

/// The role named `name` and its permissions.
async fn named(tx: &mut TenantTx, name: &str) -> Result<(RoleId, PermissionSet), AuthError> {
    let rows = tx
        .query(
            "SELECT r.id, p.permission FROM roles r
             LEFT JOIN role_permissions p ON p.role_id = r.id WHERE r.name = $1",
            &[&name],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Err(AuthError::Invalid(format!(
            "no role named `{}`",
            name.chars().take(64).collect::<String>()
        )));
    };
    let id = RoleId::from_uuid(first.get(0));
    let set = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(1))
        .filter_map(|p| p.parse().ok())
        .collect();
    Ok((id, set))
}

/// The role named `name`, if `grantor` may give it (to a user, a key, an invitation or an SSO
/// connection). Also the check before taking a role away: whoever changes a principal's role
/// must be able to give both the old role and the new one.
pub async fn grantable_role(
    tx: &mut TenantTx,
    grantor: &Grantor<'_>,
    name: &str,
) -> Result<RoleId, AuthError> {
    let (id, permissions) = named(tx, name).await?;
    grantor.check(Some(name), &permissions)?;
    Ok(id)
}

/// The role of an API key whose creator names none: the least-privileged built-in role, or the
/// creator's own role when `viewer` holds something the creator lacks (the creator's role is
/// then the narrower one). Never `admin`.
pub async fn default_key_role(
    tx: &mut TenantTx,
    grantor: &Grantor<'_>,
) -> Result<(RoleId, String), AuthError> {
    match grantable_role(tx, grantor, LEAST_PRIVILEGED).await {
        Ok(id) => Ok((id, LEAST_PRIVILEGED.to_owned())),
        Err(AuthError::NotGrantable) => match grantor {
            Grantor::Principal { role, .. } => {
                let id = grantable_role(tx, grantor, role).await?;
                Ok((id, (*role).to_owned()))
            }
            Grantor::Operator => Err(AuthError::NotGrantable),
        },
        Err(e) => Err(e),
    }
}

/// Refuses a change of the custom role `id` to `permissions` unless the grantor holds both the
/// role's current permissions (taking them from its holders) and the new ones.
pub async fn check_role_change(
    tx: &mut TenantTx,
    grantor: &Grantor<'_>,
    id: RoleId,
    permissions: &[Permission],
) -> Result<(), AuthError> {
    grantor.check_permissions(permissions)?;
    if let Some((name, current)) = crate::permissions::role_permissions(tx, Some(id)).await? {
        grantor.check(Some(&name), &current)?;
    }
    Ok(())
}
