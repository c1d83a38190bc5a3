//! API-key views shared by the operator's routes (`/admin/v1/tenants/{tenant}/api-keys`) and
//! the tenant's (`/api/v1/api-keys`), and creating a key under the grant rule.

use identity::credentials::ApiKey;
use identity::{Grantor, Identity, grants};
use serde::{Deserialize, Serialize};
use tenancy::catalog::Tenant;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::routes::{text, ts};

/// Body of `POST .../api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    pub name: String,
    /// The role the key acts with (default `viewer`, or the creator's own role if narrower;
    /// never beyond the creator's permissions).
    #[serde(default)]
    pub role: Option<String>,
}

/// An API key (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub name: String,
    /// A recognisable fragment, not usable as a credential.
    pub prefix: String,
    /// The role the key acts with.
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.as_uuid(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            role: k.role.clone(),
            created_at: ts(k.created_at),
            revoked_at: k.revoked_at.map(ts),
        }
    }
}

/// The tenant's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
}

/// Creates a key with the role `body` names (or the default) if `grantor` may give it; the
/// answer is the key's view with its secret, shown this once.
pub(crate) async fn create(
    t: &Identity,
    tenant: &Tenant,
    body: &CreateKeyBody,
    grantor: Grantor<'_>,
) -> ApiResult<serde_json::Value> {
    let name = text("name", &body.name, 100)?;
    let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
    let role = match body.role.as_deref() {
        Some(role) => (
            grants::grantable_role(&mut tx, &grantor, role).await?,
            role.to_owned(),
        ),
        None => grants::default_key_role(&mut tx, &grantor).await?,
    };
    tx.commit().await?;
    let (key, secret) = t
        .api_keys
        .create(&t.dataplane, tenant, &name, Some(role))
        .await?;
    let mut v = serde_json::to_value(KeyView::from(&key)).map_err(ApiError::internal)?;
    v["key"] = serde_json::Value::String(secret);
    Ok(v)
}
