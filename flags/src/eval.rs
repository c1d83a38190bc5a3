//! In-process evaluation: a snapshot of every environment's flags (compiled by
//! `unleash-yggdrasil`, Unleash's own evaluation engine) and of the platform's overrides (kill
//! switch, per-tenant disables, tenant opt-ins), replaced atomically when the control plane
//! changes. Evaluation takes no lock and does no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use serde::Serialize;
use tenancy::catalog::Tenant;
use tenancy::ids::TenantId;
use unleash_types::client_features::{ClientFeatures, Context};
use unleash_yggdrasil::{EngineState, UpdateMessage};

use crate::document::{
    FlagDefinition, FlagMeta, Kind, TENANT_ID, TENANT_PLACEMENT, TENANT_PLAN, to_client_features,
};

/// One environment's flags, compiled.
pub struct Environment {
    engine: EngineState,
    flags: HashMap<String, Entry>,
}

struct Entry {
    kind: Kind,
    meta: FlagMeta,
    /// The feature's own on/off switch in this environment.
    enabled: bool,
}

impl Environment {
    /// Compiles `flags` and `segments` (warnings of the compiler, e.g. an unknown operator, make
    /// the affected strategy evaluate to false, as in every Unleash client).
    #[must_use]
    pub fn compile(
        flags: &[FlagDefinition],
        segments: &[crate::document::SegmentDefinition],
    ) -> Self {
        let engine = EngineState::default();
        let features: ClientFeatures = to_client_features(flags, segments);
        if let Some(warnings) = engine.take_state(UpdateMessage::FullResponse(features)) {
            for w in warnings {
                tracing::debug!(flag = %w.toggle_name, message = %w.message, "flag compiled with a warning");
            }
        }
        Self {
            engine,
            flags: flags
                .iter()
                .map(|f| {
                    let entry = Entry {
                        kind: f.kind(),
                        meta: f.meta.clone(),
                        enabled: f.feature.enabled,
                    };
                    (f.feature.name.clone(), entry)
                })
                .collect(),
        }
    }
}

/// The platform's own overrides, applied before the flag's rules.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// "All experimental flags off" (kinds `experiment` and `release`), until lifted.
    pub kill_switch: bool,
    /// Flags an operator turned off for one tenant.
    pub disabled: HashMap<TenantId, HashSet<String>>,
    /// A tenant admin's choice (in: true, out: false) for flags that allow opting in or out.
    pub tenant_choice: HashMap<TenantId, HashMap<String, bool>>,
}

/// Everything evaluation reads, replaced as a whole.
#[derive(Default)]
pub struct Snapshot {
    pub environments: HashMap<String, Environment>,
    pub overrides: Overrides,
}

/// Who a flag is evaluated for. Built from a request's tenant ([`FlagContext::for_tenant`]);
/// evaluating without a tenant has to say so ([`FlagContext::without_tenant`]).
#[derive(Clone, Debug)]
pub struct FlagContext {
    tenant: Option<TenantId>,
    unleash: Context,
}

impl FlagContext {
    /// The tenant's id, plan and placement as context properties (`tenantId`, `tenantPlan`,
    /// `tenantPlacement`), so strategies and stickiness can use them.
    #[must_use]
    pub fn for_tenant(tenant: &Tenant) -> Self {
        let properties = HashMap::from([
            (TENANT_ID.to_owned(), tenant.id.to_string()),
            (TENANT_PLAN.to_owned(), tenant.plan.clone()),
            (
                TENANT_PLACEMENT.to_owned(),
                tenant.placement.kind().to_owned(),
            ),
        ]);
        Self {
            tenant: Some(tenant.id),
            unleash: Context {
                properties: Some(properties),
                ..Context::default()
            },
        }
    }

    /// A context with no tenant in scope (operator tooling, platform jobs): `why` documents the
    /// call site. Per-tenant overrides do not apply.
    #[must_use]
    pub fn without_tenant(_why: &'static str, unleash: Context) -> Self {
        let tenant = unleash
            .properties
            .as_ref()
            .and_then(|p| p.get(TENANT_ID))
            .and_then(|t| TenantId::parse(t));
        Self { tenant, unleash }
    }

    #[must_use]
    pub fn user(mut self, id: impl ToString) -> Self {
        self.unleash.user_id = Some(id.to_string());
        self
    }

    #[must_use]
    pub fn session(mut self, id: impl ToString) -> Self {
        self.unleash.session_id = Some(id.to_string());
        self
    }

    #[must_use]
    pub fn remote_address(mut self, addr: impl ToString) -> Self {
        self.unleash.remote_address = Some(addr.to_string());
        self
    }

    #[must_use]
    pub fn environment(mut self, env: &str) -> Self {
        self.unleash.environment = Some(env.to_owned());
        self
    }
}

/// One flag's answer, in the Unleash client-API shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Toggle {
    pub name: String,
    pub enabled: bool,
    pub variant: Variant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub name: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// Evaluation counts of one flag (for the metrics endpoint): on, off, and by variant.
#[derive(Debug, Default)]
pub struct Counts {
    pub yes: AtomicU64,
    pub no: AtomicU64,
    /// By variant name (at most [`MAX_VARIANTS`] names per flag).
    variants: std::sync::Mutex<HashMap<String, u64>>,
}

/// Variant names counted per flag (imported documents may carry many).
const MAX_VARIANTS: usize = 100;

/// The flags of this instance: evaluates in its environment (`PLATFORM_ENVIRONMENT`).
pub struct Flags {
    environment: String,
    current: ArcSwap<Snapshot>,
    counts: RwLock<HashMap<String, Arc<Counts>>>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

impl Flags {
    #[must_use]
    pub fn new(environment: &str) -> Self {
        Self {
            environment: environment.to_owned(),
            current: ArcSwap::from_pointee(Snapshot::default()),
            counts: RwLock::new(HashMap::new()),
        }
    }

    #[must_use]
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// Replaces what evaluation reads, atomically.
    pub fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Whether `name` is on for `ctx` in this instance's environment.
    #[must_use]
    pub fn is_enabled(&self, name: &str, ctx: &FlagContext) -> bool {
        let snap = self.current.load();
        let on = snap
            .environments
            .get(&self.environment)
            .is_some_and(|env| decide(env, &snap.overrides, name, ctx));
        self.count(name, on);
        on
    }

    /// Every flag of `environment` (this instance's by default) for `ctx`, or only `names`.
    #[must_use]
    pub fn evaluate(
        &self,
        environment: Option<&str>,
        ctx: &FlagContext,
        names: Option<&[String]>,
    ) -> Vec<Toggle> {
        let snap = self.current.load();
        let Some(env) = snap
            .environments
            .get(environment.unwrap_or(&self.environment))
        else {
            return names.unwrap_or_default().iter().map(|n| off(n)).collect();
        };
        let mut all: Vec<&str> = match names {
            Some(n) => n.iter().map(String::as_str).collect(),
            None => env.flags.keys().map(String::as_str).collect(),
        };
        all.sort_unstable();
        all.dedup();
        all.into_iter()
            .map(|name| {
                let on = decide(env, &snap.overrides, name, ctx);
                self.count(name, on);
                if !on {
                    return off(name);
                }
                let v = env.engine.get_variant(name, &ctx.unleash, &None);
                self.count_variant(name, &v.name);
                Toggle {
                    name: name.to_owned(),
                    enabled: true,
                    variant: Variant {
                        name: v.name,
                        enabled: v.enabled,
                        payload: v.payload.and_then(|p| serde_json::to_value(p).ok()),
                    },
                }
            })
            .collect()
    }

    /// The evaluation counts so far, by flag.
    #[must_use]
    pub fn counts(&self) -> Vec<(String, u64, u64)> {
        let map = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<_> = map
            .iter()
            .map(|(n, c)| {
                (
                    n.clone(),
                    c.yes.load(Ordering::Relaxed),
                    c.no.load(Ordering::Relaxed),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Variant evaluation counts so far: (flag, variant, count).
    #[must_use]
    pub fn variant_counts(&self) -> Vec<(String, String, u64)> {
        let map = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for (flag, c) in map.iter() {
            let v = c
                .variants
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            out.extend(v.iter().map(|(n, k)| (flag.clone(), n.clone(), *k)));
        }
        out.sort();
        out
    }

    fn count_variant(&self, name: &str, variant: &str) {
        if let Some(c) = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            let mut v = c
                .variants
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if v.len() < MAX_VARIANTS || v.contains_key(variant) {
                *v.entry(variant.to_owned()).or_default() += 1;
            }
        }
    }

    fn count(&self, name: &str, on: bool) {
        let hit = |c: &Counts| {
            if on { &c.yes } else { &c.no }.fetch_add(1, Ordering::Relaxed);
        };
        if let Some(c) = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            hit(c);
            return;
        }
        let mut map = self
            .counts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Unknown names are counted too, but not without bound.
        if map.len() < 10_000 || map.contains_key(name) {
            hit(map.entry(name.to_owned()).or_default());
        }
    }
}

fn off(name: &str) -> Toggle {
    Toggle {
        name: name.to_owned(),
        enabled: false,
        variant: Variant {
            name: "disabled".into(),
            enabled: false,
            payload: None,
        },
    }
}

/// The one decision: the platform's overrides first, then the flag's own rules.
fn decide(env: &Environment, overrides: &Overrides, name: &str, ctx: &FlagContext) -> bool {
    let Some(entry) = env.flags.get(name) else {
        return false;
    };
    if overrides.kill_switch && entry.kind.experimental() {
        return false;
    }
    if let Some(t) = ctx.tenant {
        if overrides.disabled.get(&t).is_some_and(|d| d.contains(name)) {
            return false;
        }
        if entry.meta.tenant_opt_in
            && let Some(choice) = overrides.tenant_choice.get(&t).and_then(|c| c.get(name))
        {
            // Opting in still needs the flag switched on in this environment.
            return *choice && entry.enabled;
        }
    }
    env.engine.is_enabled(name, &ctx.unleash, &None)
}
