//! Seat limits: how many members a tenant's plan allows (the catalog's `plans.seats`, kept by
//! billing; NULL: unbounded). One rule, applied wherever a member is added ([`users::create`]:
//! sign-up, an accepted invitation, an SSO user made just in time) or a seat is reserved
//! ([`users::invite`]): the tenant's users plus its pending invitations stay within the limit.
//! Both take a [`Seats`], which only [`crate::Auth::seats`] makes, so no path can skip the rule.
//!
//! [`users::create`]: crate::users::create
//! [`users::invite`]: crate::users::invite

use tenancy::catalog::CatalogError;
use tenancy::dataplane::TenantTx;
use tenancy::ids::TenantId;

use crate::{Auth, AuthError};

/// A tenant's seat limit, read from the catalog when a member is about to be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seats {
    limit: Option<i64>,
}

impl Seats {
    /// The limit (`None`: unbounded).
    #[must_use]
    pub fn limit(self) -> Option<i64> {
        self.limit
    }
}

impl Auth {
    /// The seat limit of `tenant`'s plan in effect (the catalog's `tenants.plan`, which billing
    /// keeps on the plan the subscription entitles it to).
    pub async fn seats(&self, tenant: TenantId) -> Result<Seats, AuthError> {
        let limit: Option<i32> = sqlx::query_scalar(
            "SELECT p.seats FROM tenants t JOIN plans p ON p.name = t.plan WHERE t.id = $1",
        )
        .bind(tenant.as_uuid())
        .fetch_optional(self.catalog.pool())
        .await
        .map_err(CatalogError::from)?
        .flatten();
        Ok(Seats {
            limit: limit.map(i64::from),
        })
    }
}

/// Takes a seat in `tx`: refused with [`AuthError::SeatLimit`] if the tenant's users and pending
/// invitations already fill its limit. Member additions of one tenant are serialised by a
/// transaction-scoped lock, so two concurrent ones cannot both take the last seat.
pub(crate) async fn take(tx: &mut TenantTx, seats: Seats) -> Result<(), AuthError> {
    let Some(limit) = seats.limit else {
        return Ok(());
    };
    let tenant = tx.tenant().as_uuid();
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('platform.seats:' || $1::uuid::text, 0))",
        &[&tenant],
    )
    .await?;
    let used: i64 = tx
        .query_opt(
            "SELECT (SELECT count(*) FROM users)
                  + (SELECT count(*) FROM invitations WHERE accepted_at IS NULL AND expires_at > now())",
            &[],
        )
        .await?
        .map_or(0, |r| r.get(0));
    if used >= limit {
        return Err(AuthError::SeatLimit(limit));
    }
    Ok(())
}
