//! JWT access tokens for the load benchmark: one user per tenant, and a fresh session (so a fresh
//! access token, valid 10 minutes) per tenant before each workload, minted through `tenancy` the
//! way a login would, without the password hash (the benchmark measures requests, not logins).
//! The platform under load then verifies them like any client's tokens: signature, claims, tenant
//! and live session.

use std::collections::HashMap;

use anyhow::Context as _;
use futures_util::{StreamExt as _, TryStreamExt as _};
use identity::users;
use tenancy::ids::{TenantId, UserId};
use uuid::Uuid;

use crate::world::World;

/// Users created so far, by tenant.
#[derive(Default)]
pub struct Minter {
    users: HashMap<Uuid, UserId>,
}

impl Minter {
    /// A fresh access token for every tenant of `world`, by tenant id. The `tenancy` instance used
    /// here is dropped before returning, so its connections do not count during the measurement.
    pub async fn mint(&mut self, world: &World) -> anyhow::Result<HashMap<Uuid, String>> {
        let started = tenancy::bootstrap::start(&world.settings()?)
            .await
            .context("starting tenancy to mint tokens")?;
        let t = &identity::Identity::start(&started.tenancy).await?;
        let resolver = &started.tenancy.resolver;
        let users = &self.users;
        let minted: Vec<(Uuid, UserId, String)> = futures_util::stream::iter(&world.tenants)
            .map(|bt| async move {
                let tenant = resolver
                    .tenant(TenantId::from_uuid(bt.id))
                    .await?
                    .context("tenant")?;
                let user = match users.get(&bt.id) {
                    Some(u) => *u,
                    None => {
                        let role = t.auth.role_named(&t.dataplane, &tenant, "admin").await?;
                        let seats = t.auth.seats(tenant.id).await?;
                        let mut tx = t.auth.begin(&t.dataplane, &tenant).await?;
                        // Not an argon2 hash: this user cannot log in with a password.
                        let email = tenancy::ids::EmailAddress::parse("bench@example.com")?;
                        let id =
                            users::create(&mut tx, seats, &email, "Bench", "!bench", role).await?;
                        tx.commit().await?;
                        id
                    }
                };
                let tokens = t
                    .auth
                    .start_session(&t.dataplane, &tenant, user, Some("bench"), None)
                    .await?;
                // Close this instance's pool of the tenant now: with the platform's own pools
                // open, a hundred idle ones here would exceed the server's max_connections.
                t.dataplane.forget_tenant(tenant.id).await;
                anyhow::Ok((bt.id, user, tokens.access_token))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
        started.tenancy.catalog.pool().close().await;
        drop(started);
        Ok(minted
            .into_iter()
            .map(|(tenant, user, token)| {
                self.users.insert(tenant, user);
                (tenant, token)
            })
            .collect())
    }
}
