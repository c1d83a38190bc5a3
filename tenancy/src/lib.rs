//! The tenancy core: catalog, tenant resolution, pool routing, provisioning, migrations,
//! placement moves and secrets. No HTTP here, and nothing about users or their audit trail:
//! `identity`, `audit` and `ratelimit` sit on top of this crate, and the server (`platform`) and
//! the ops tool (`platformctl`) on top of those.

pub mod bootstrap;
pub mod catalog;
pub mod context;
pub mod crypto;
pub mod dataplane;
pub mod embedded;
pub mod ids;
pub mod migrate;
pub mod pg;
pub mod placement;
pub mod provision;
pub mod resolve;
pub mod servers;
pub mod settings;
pub mod text_enum;
