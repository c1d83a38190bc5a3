//! The sample domain's SQL that more than one handler needs (projects, members and tasks all
//! check that a project exists; creating a project makes its creator a member).

use tenancy::dataplane::TenantTx;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::tenant::{Authenticated, Principal};

/// The project, if it exists for this tenant (RLS hides every other tenant's).
pub(crate) async fn project_exists(tx: &mut TenantTx, id: Uuid) -> ApiResult<()> {
    tx.query_opt("SELECT 1 FROM projects WHERE id = $1", &[&id])
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("no such project"))
}

/// Adds the creator of a project as its admin.
pub(crate) async fn add_creator(
    tx: &mut TenantTx,
    project: Uuid,
    auth: &Authenticated,
) -> ApiResult<()> {
    if let Principal::User { id, .. } = auth.principal {
        tx.execute(
            "INSERT INTO project_members (tenant_id, project_id, user_id, role) VALUES ($1, $2, $3, 'admin')",
            &[&auth.tenant.id.as_uuid(), &project, &id.as_uuid()],
        )
        .await?;
    }
    Ok(())
}
