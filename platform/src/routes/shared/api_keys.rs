//! API-key views shared by the operator's routes (`/admin/v1/tenants/{tenant}/api-keys`) and
//! the tenant's (`/api/v1/api-keys`).

use identity::credentials::ApiKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::routes::ts;

/// Body of `POST .../api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    pub name: String,
    /// The role the key acts with (default `admin`).
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
