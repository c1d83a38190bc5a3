//! Feature flags for a multi-tenant platform: flags in Unleash's document shape (imported
//! leniently, authored strictly), evaluated in-process by Unleash's own engine
//! (`unleash-yggdrasil`) from a snapshot replaced atomically, with the platform's overrides on
//! top: a global kill switch for experimental flags, per-tenant disables and tenant opt-in/out.
//! Every evaluation needs a tenant in scope unless the caller says otherwise
//! ([`FlagContext::without_tenant`]). Storage and change notification live in [`store`]. No HTTP.

pub mod document;
pub mod eval;
pub mod store;

pub use document::{DocumentError, FlagDefinition, FlagMeta, Kind};
pub use eval::{FlagContext, Flags, Toggle};
