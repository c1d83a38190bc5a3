//! The tenancy core: catalog, tenant resolution, pool routing, provisioning, migrations and
//! secrets. No HTTP here: the server (`platform`) and the ops tool (`platformctl`) both sit on it.

pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod catalog;
pub mod credentials;
pub mod crypto;
pub mod dataplane;
pub mod embedded;
pub mod ids;
pub mod migrate;
pub mod pg;
pub mod placement;
pub mod provision;
pub mod ratelimit;
pub mod resolve;
pub mod settings;
