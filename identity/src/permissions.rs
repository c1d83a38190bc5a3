//! Roles and permissions are data: `roles` and `role_permissions` rows in the tenant's database.
//! The built-in roles (`owner`, `admin`, `member`, `viewer`) are defined and seeded by the tenant
//! migrations (`platform_seed_builtin_roles`, called at provisioning and by migration, never on
//! the request path); custom roles are created through the API without a schema change. A permission is `area:action`.

use std::collections::BTreeSet;

use super::{AuthChange, AuthError};
use tenancy::dataplane::TenantTx;
use tenancy::ids::RoleId;

tenancy::text_enum!(
    /// A permission, `area:action`. Roles are sets of these (stored as their text).
    pub enum Permission {
        ProjectsRead = "projects:read",
        ProjectsWrite = "projects:write",
        TasksRead = "tasks:read",
        TasksWrite = "tasks:write",
        UsersRead = "users:read",
        MembersManage = "members:manage",
        RolesManage = "roles:manage",
        ApiKeysManage = "api_keys:manage",
        AuditRead = "audit:read",
        SsoManage = "sso:manage",
        FlagsManage = "flags:manage",
        JobsRead = "jobs:read",
        BillingRead = "billing:read",
        BillingManage = "billing:manage",
    }
);

impl Permission {
    /// Parses a permission named in a request, with the list of known ones in the error.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        s.parse().map_err(|_| {
            AuthError::Invalid(format!(
                "unknown permission `{}`; known: {}",
                s.chars().take(64).collect::<String>(),
                Self::ALL
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// The permissions a principal holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    #[must_use]
    pub fn contains(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }

    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    /// Whether every permission of `self` is also in `other`.
    #[must_use]
    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Permissions read back from the database; a name this build does not know (written by a newer
/// one) grants nothing here.
fn known(names: impl IntoIterator<Item = String>) -> impl Iterator<Item = Permission> {
    names.into_iter().filter_map(|n| n.parse().ok())
}

/// A role as listed.
#[derive(Clone, Debug)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub builtin: bool,
    pub permissions: Vec<Permission>,
}

/// The role named `name`.
pub async fn role_by_name(tx: &mut TenantTx, name: &str) -> Result<Option<RoleId>, AuthError> {
    Ok(tx
        .query_opt("SELECT id FROM roles WHERE name = $1", &[&name])
        .await?
        .map(|r| RoleId::from_uuid(r.get(0))))
}

/// A role's name and permissions; `None` means the built-in `admin` (keys made before roles).
pub async fn role_permissions(
    tx: &mut TenantTx,
    role: Option<RoleId>,
) -> Result<Option<(String, PermissionSet)>, AuthError> {
    let rows = tx
        .query(
            "SELECT r.name, p.permission FROM roles r
             LEFT JOIN role_permissions p ON p.role_id = r.id
             WHERE CASE WHEN $1::uuid IS NULL THEN r.name = 'admin' ELSE r.id = $1 END",
            &[&role.map(|r| r.as_uuid())],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let name: String = first.get(0);
    let set = known(rows.iter().filter_map(|r| r.get::<_, Option<String>>(1))).collect();
    Ok(Some((name, set)))
}

/// Every role with its permissions.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<Role>, AuthError> {
    let rows = tx
        .query(
            "SELECT r.id, r.name, r.builtin,
                    COALESCE(array_agg(p.permission ORDER BY p.permission) FILTER (WHERE p.permission IS NOT NULL), '{}')
             FROM roles r LEFT JOIN role_permissions p ON p.role_id = r.id
             GROUP BY r.id, r.name, r.builtin ORDER BY r.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Role {
            id: RoleId::from_uuid(r.get(0)),
            name: r.get(1),
            builtin: r.get(2),
            permissions: known(r.get::<_, Vec<String>>(3)).collect(),
        })
        .collect())
}

/// Creates a custom role.
pub async fn create(
    tx: &mut TenantTx,
    name: &str,
    permissions: &[Permission],
) -> Result<Role, AuthError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(AuthError::Invalid(
            "`name` must be 1 to 64 characters of a-z, 0-9, `-`, `_`".into(),
        ));
    }
    let tenant = tx.tenant().as_uuid();
    let id = RoleId::new();
    let n = tx
        .execute(
            "INSERT INTO roles (tenant_id, id, name) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, name) DO NOTHING",
            &[&tenant, &id.as_uuid(), &name],
        )
        .await?;
    if n == 0 {
        return Err(AuthError::RoleNameTaken);
    }
    let perms: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
    tx.execute(
        "INSERT INTO role_permissions (tenant_id, role_id, permission)
         SELECT $1, $2, p FROM unnest($3::text[]) p ON CONFLICT DO NOTHING",
        &[&tenant, &id.as_uuid(), &perms],
    )
    .await?;
    let mut permissions = permissions.to_vec();
    permissions.sort();
    permissions.dedup();
    Ok(Role {
        id,
        name: name.to_owned(),
        builtin: false,
        permissions,
    })
}

/// Locks a role for a change and refuses built-in ones. Returns its name.
async fn custom_role_for_update(tx: &mut TenantTx, id: RoleId) -> Result<String, AuthError> {
    let row = tx
        .query_opt(
            "SELECT name, builtin FROM roles WHERE id = $1 FOR UPDATE",
            &[&id.as_uuid()],
        )
        .await?
        .ok_or(AuthError::NoSuchRole)?;
    if row.get::<_, bool>(1) {
        return Err(AuthError::BuiltinRole);
    }
    Ok(row.get(0))
}

/// Replaces a custom role's permissions. The name stays: SSO role mappings refer to it. The change
/// is for [`crate::Auth::changed`] after the commit (its holders then have the new set on every
/// instance).
pub async fn set_permissions(
    tx: &mut TenantTx,
    id: RoleId,
    permissions: &[Permission],
) -> Result<(Role, AuthChange), AuthError> {
    let name = custom_role_for_update(tx, id).await?;
    let mut permissions = permissions.to_vec();
    permissions.sort();
    permissions.dedup();
    let perms: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
    // Only the difference is written, so the audit trail shows exactly what was granted and
    // what was taken away.
    tx.execute(
        "DELETE FROM role_permissions WHERE role_id = $1 AND permission <> ALL($2::text[])",
        &[&id.as_uuid(), &perms],
    )
    .await?;
    tx.execute(
        "INSERT INTO role_permissions (tenant_id, role_id, permission)
         SELECT $1, $2, p FROM unnest($3::text[]) p ON CONFLICT DO NOTHING",
        &[&tx.tenant().as_uuid(), &id.as_uuid(), &perms],
    )
    .await?;
    let role = Role {
        id,
        name,
        builtin: false,
        permissions,
    };
    Ok((role, AuthChange(tx.tenant())))
}

/// Deletes a custom role that nothing refers to: no user, live API key, open invitation or SSO
/// connection (default role or mapping) may still give it. The change is for
/// [`crate::Auth::changed`] after the commit (caches may still hold the role).
pub async fn delete(tx: &mut TenantTx, id: RoleId) -> Result<AuthChange, AuthError> {
    let name = custom_role_for_update(tx, id).await?;
    let row = tx
        .query_opt(
            "SELECT EXISTS (SELECT 1 FROM users WHERE role_id = $1),
                    EXISTS (SELECT 1 FROM api_keys WHERE role_id = $1 AND revoked_at IS NULL),
                    EXISTS (SELECT 1 FROM invitations WHERE role_id = $1 AND accepted_at IS NULL
                                AND expires_at > now()),
                    EXISTS (SELECT 1 FROM sso_connections WHERE default_role = $2
                                OR jsonb_path_exists(role_mapping, '$.** ? (@.role == $r)',
                                                     jsonb_build_object('r', $2::text)))",
            &[&id.as_uuid(), &name.as_str()],
        )
        .await?
        .ok_or(AuthError::NoSuchRole)?;
    let in_use = [
        (
            row.get::<_, bool>(0),
            "users hold this role; give them another one first",
        ),
        (
            row.get::<_, bool>(1),
            "live API keys have this role; revoke them first",
        ),
        (
            row.get::<_, bool>(2),
            "open invitations give this role; let them expire first",
        ),
        (
            row.get::<_, bool>(3),
            "an SSO connection maps users to this role; change it first",
        ),
    ];
    if let Some((_, why)) = in_use.iter().find(|(used, _)| *used) {
        return Err(AuthError::RoleInUse(why));
    }
    // Expired or accepted invitations go with it (their foreign key cascades).
    tx.execute("DELETE FROM roles WHERE id = $1", &[&id.as_uuid()])
        .await?;
    Ok(AuthChange(tx.tenant()))
}

impl super::Auth {
    /// The role named `name` of `tenant` (422 material if there is none).
    pub async fn role_named(
        &self,
        dp: &tenancy::dataplane::DataPlane,
        tenant: &tenancy::catalog::Tenant,
        name: &str,
    ) -> Result<RoleId, AuthError> {
        let mut tx = self.begin(dp, tenant).await?;
        let id = role_by_name(&mut tx, name).await?;
        tx.commit().await?;
        id.ok_or_else(|| {
            AuthError::Invalid(format!(
                "no role named `{}`",
                name.chars().take(64).collect::<String>()
            ))
        })
    }
}
