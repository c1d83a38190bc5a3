//! Unleash documents in, flag definitions out: the client-API features format
//! (`{"version", "features", "segments"}`) and the delta format (`{"events": [...]}`), read
//! leniently as an Unleash client reads them; and the strict checks for flags authored through
//! the admin API. Our own strategies (tenant ids, plan, placement) are rewritten here into
//! Unleash's `default` strategy with a constraint on the context property the request's tenant
//! fills, so the evaluator needs no custom strategy.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use unleash_types::client_features::{
    ClientFeature, ClientFeatures, Constraint, Operator, Segment, Strategy,
};

/// Context properties the platform fills from the request's tenant.
pub const TENANT_ID: &str = "tenantId";
pub const TENANT_PLAN: &str = "tenantPlan";
pub const TENANT_PLACEMENT: &str = "tenantPlacement";

/// Our strategies: name, its parameter (comma-separated values), the context property matched.
const TENANT_STRATEGIES: &[(&str, &str, &str)] = &[
    ("tenantIds", "tenantIds", TENANT_ID),
    ("tenantPlan", "plans", TENANT_PLAN),
    ("tenantPlacement", "placements", TENANT_PLACEMENT),
];

/// Unleash's built-in strategies (what strict authoring accepts, with ours).
const UNLEASH_STRATEGIES: &[&str] = &[
    "default",
    "userWithId",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "flexibleRollout",
    "remoteAddress",
    "applicationHostname",
];

/// What a flag is for; `experiment` and `release` flags are what the global kill switch turns
/// off. Read from the feature's Unleash `type` (`operational` and `kill-switch` are `ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Release,
    Experiment,
    Ops,
    Permission,
}

impl Kind {
    #[must_use]
    pub fn from_type(t: Option<&str>) -> Self {
        match t {
            Some("experiment") => Self::Experiment,
            Some("operational" | "ops" | "kill-switch") => Self::Ops,
            Some("permission") => Self::Permission,
            _ => Self::Release,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Experiment => "experiment",
            Self::Ops => "ops",
            Self::Permission => "permission",
        }
    }

    /// Whether the global kill switch turns flags of this kind off.
    #[must_use]
    pub fn experimental(self) -> bool {
        matches!(self, Self::Release | Self::Experiment)
    }
}

/// Our fields beside Unleash's, in the same JSON object as the feature.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A flag not removed by this date (`YYYY-MM-DD`) is listed by `platformctl flags stale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    /// Whether tenant admins may opt their tenant in or out.
    #[serde(default)]
    pub tenant_opt_in: bool,
}

/// A `YYYY-MM-DD` date.
#[must_use]
pub fn parse_date(s: &str) -> Option<time::Date> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// One flag as authored or imported: Unleash's feature and our fields, and the JSON they were
/// read from (kept as given: an operator this engine does not know still round-trips).
#[derive(Clone, Debug)]
pub struct FlagDefinition {
    pub feature: ClientFeature,
    pub meta: FlagMeta,
    raw: Value,
}

/// One segment (a named list of constraints strategies refer to by id), and its JSON as given.
#[derive(Clone, Debug)]
pub struct SegmentDefinition {
    pub segment: Segment,
    pub raw: Value,
}

impl SegmentDefinition {
    pub fn from_json(v: &Value) -> Result<Self, DocumentError> {
        let segment: Segment = serde_json::from_value(v.clone())
            .map_err(|e| DocumentError(format!("not an Unleash segment: {e}")))?;
        Ok(Self {
            segment,
            raw: v.clone(),
        })
    }
}

impl FlagDefinition {
    #[must_use]
    pub fn kind(&self) -> Kind {
        Kind::from_type(self.feature.feature_type.as_deref())
    }

    /// The feature and our fields as one JSON object, as given (what the admin API answers and
    /// stores).
    #[must_use]
    pub fn to_json(&self) -> &Value {
        &self.raw
    }

    /// Reads one flag from a JSON object (Unleash's feature shape plus our fields).
    pub fn from_json(v: &Value) -> Result<Self, DocumentError> {
        let feature: ClientFeature = serde_json::from_value(v.clone())
            .map_err(|e| DocumentError(format!("not an Unleash feature: {e}")))?;
        let mut meta = FlagMeta::default();
        if let Value::Object(map) = v {
            if let Some(o) = map.get("owner") {
                meta.owner = Some(
                    o.as_str()
                        .ok_or_else(|| DocumentError("`owner` must be a string".into()))?
                        .to_owned(),
                );
            }
            if let Some(d) = map.get("staleAfter").filter(|d| !d.is_null()) {
                let s = d.as_str().ok_or_else(|| {
                    DocumentError("`staleAfter` must be a date (YYYY-MM-DD)".into())
                })?;
                parse_date(s).ok_or_else(|| {
                    DocumentError(format!("`staleAfter`: `{s}` is not a date (YYYY-MM-DD)"))
                })?;
                meta.stale_after = Some(s.to_owned());
            }
            if let Some(b) = map.get("tenantOptIn") {
                meta.tenant_opt_in = b
                    .as_bool()
                    .ok_or_else(|| DocumentError("`tenantOptIn` must be a boolean".into()))?;
            }
        }
        Ok(Self {
            feature,
            meta,
            raw: v.clone(),
        })
    }
}

/// A document that cannot be read, or a flag that fails the strict checks (a 422).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// What an import document holds.
#[derive(Debug, Default)]
pub struct Imported {
    pub flags: Vec<FlagDefinition>,
    pub segments: Vec<SegmentDefinition>,
    /// Flags the delta removes (merge mode deletes them; replace mode has them absent anyway).
    pub removed_flags: Vec<String>,
    pub removed_segments: Vec<i32>,
}

/// Reads a features document or a delta document, leniently (as an Unleash client would).
pub fn parse_import(doc: &Value) -> Result<Imported, DocumentError> {
    let Value::Object(map) = doc else {
        return Err(DocumentError("the document must be a JSON object".into()));
    };
    if let Some(events) = map.get("events") {
        return from_delta(events);
    }
    let Some(Value::Array(features)) = map.get("features") else {
        return Err(DocumentError(
            "an Unleash document has `features` (an array) or `events`".into(),
        ));
    };
    let flags = features
        .iter()
        .map(FlagDefinition::from_json)
        .collect::<Result<Vec<_>, _>>()?;
    let segments = match map.get("segments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(s)) => s
            .iter()
            .map(SegmentDefinition::from_json)
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(DocumentError("`segments` must be an array".into())),
    };
    Ok(Imported {
        flags,
        segments,
        ..Imported::default()
    })
}

/// Unleash's delta format: events applied in order (the last event for a name wins; a
/// hydration starts over).
fn from_delta(events: &Value) -> Result<Imported, DocumentError> {
    let Value::Array(events) = events else {
        return Err(DocumentError("`events` must be an array".into()));
    };
    let mut flags: BTreeMap<String, Option<FlagDefinition>> = BTreeMap::new();
    let mut segments: BTreeMap<i32, Option<SegmentDefinition>> = BTreeMap::new();
    let field = |e: &Value, name: &str| -> Result<Value, DocumentError> {
        e.get(name)
            .cloned()
            .ok_or_else(|| DocumentError(format!("a delta event lacks `{name}`")))
    };
    for e in events {
        match e.get("type").and_then(Value::as_str) {
            Some("feature-updated") => {
                let f = FlagDefinition::from_json(&field(e, "feature")?)?;
                flags.insert(f.feature.name.clone(), Some(f));
            }
            Some("feature-removed") => {
                let name = field(e, "featureName")?;
                let name = name
                    .as_str()
                    .ok_or_else(|| DocumentError("`featureName` must be a string".into()))?;
                flags.insert(name.to_owned(), None);
            }
            Some("segment-updated") => {
                let seg = SegmentDefinition::from_json(&field(e, "segment")?)?;
                segments.insert(seg.segment.id, Some(seg));
            }
            Some("segment-removed") => {
                let id = field(e, "segmentId")?
                    .as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| DocumentError("`segmentId` must be a number".into()))?;
                segments.insert(id, None);
            }
            Some("hydration") => {
                flags.clear();
                segments.clear();
                for f in field(e, "features")?.as_array().into_iter().flatten() {
                    let f = FlagDefinition::from_json(f)?;
                    flags.insert(f.feature.name.clone(), Some(f));
                }
                for seg in field(e, "segments")?.as_array().into_iter().flatten() {
                    let seg = SegmentDefinition::from_json(seg)?;
                    segments.insert(seg.segment.id, Some(seg));
                }
            }
            // Lenient, as a client: an event type this version does not know is skipped.
            _ => {}
        }
    }
    let mut out = Imported::default();
    for (name, f) in flags {
        match f {
            Some(f) => out.flags.push(f),
            None => out.removed_flags.push(name),
        }
    }
    for (id, s) in segments {
        match s {
            Some(seg) => out.segments.push(seg),
            None => out.removed_segments.push(id),
        }
    }
    Ok(out)
}

/// The evaluator's view of a flag set: our strategies rewritten into Unleash's.
#[must_use]
pub fn to_client_features(
    flags: &[FlagDefinition],
    segments: &[SegmentDefinition],
) -> ClientFeatures {
    ClientFeatures {
        version: 2,
        features: flags.iter().map(|f| rewrite(&f.feature)).collect(),
        segments: Some(segments.iter().map(|s| s.segment.clone()).collect()),
        query: None,
        meta: None,
    }
}

fn rewrite(feature: &ClientFeature) -> ClientFeature {
    let mut f = feature.clone();
    if let Some(strategies) = &mut f.strategies {
        for s in strategies.iter_mut() {
            if let Some((_, param, property)) =
                TENANT_STRATEGIES.iter().find(|(name, ..)| *name == s.name)
            {
                let values: Vec<String> = s
                    .parameters
                    .as_ref()
                    .and_then(|p| p.get(*param))
                    .map(|v| {
                        v.split(',')
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                s.name = "default".into();
                s.constraints.get_or_insert_with(Vec::new).push(Constraint {
                    context_name: (*property).to_owned(),
                    operator: Operator::In,
                    case_insensitive: false,
                    inverted: false,
                    values: Some(values),
                    value: None,
                });
            }
        }
    }
    f
}

/// The strict checks for a flag authored through the admin API, against the flags it would sit
/// beside (`others`, by name, without this one): known strategies and operators, variant weights
/// that sum to 1000, no dependency cycle.
pub fn validate_authored(
    flag: &FlagDefinition,
    others: &HashMap<String, FlagDefinition>,
) -> Result<(), DocumentError> {
    let f = &flag.feature;
    if f.name.trim().is_empty() || f.name.len() > 200 || f.name.chars().any(char::is_control) {
        return Err(DocumentError(
            "`name` must be 1 to 200 printable characters".into(),
        ));
    }
    for s in f.strategies.iter().flatten() {
        check_strategy(s)?;
    }
    if let Some(v) = f.variants.as_ref().filter(|v| !v.is_empty()) {
        let sum: i64 = v.iter().map(|v| i64::from(v.weight)).sum();
        if sum != 1000 || v.iter().any(|v| v.weight < 0) {
            return Err(DocumentError(format!(
                "the variant weights of `{}` sum to {sum}; they must sum to 1000",
                f.name
            )));
        }
    }
    // Dependency cycle through this flag.
    let mut graph: HashMap<&str, Vec<&str>> = others
        .values()
        .map(|o| (o.feature.name.as_str(), dependencies(&o.feature)))
        .collect();
    graph.insert(f.name.as_str(), dependencies(f));
    let mut seen = HashSet::new();
    let mut stack = vec![(f.name.as_str(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        for next in graph.get(node).into_iter().flatten() {
            if *next == f.name {
                return Err(DocumentError(format!(
                    "`{}` depends on itself through its dependencies (a cycle)",
                    f.name
                )));
            }
            if depth < 1000 && seen.insert(*next) {
                stack.push((next, depth + 1));
            }
        }
    }
    Ok(())
}

fn dependencies(f: &ClientFeature) -> Vec<&str> {
    f.dependencies
        .iter()
        .flatten()
        .map(|d| d.feature.as_str())
        .collect()
}

fn check_strategy(s: &Strategy) -> Result<(), DocumentError> {
    if !UNLEASH_STRATEGIES.contains(&s.name.as_str())
        && !TENANT_STRATEGIES.iter().any(|(n, ..)| *n == s.name)
    {
        return Err(DocumentError(format!("unknown strategy `{}`", s.name)));
    }
    for c in s.constraints.iter().flatten() {
        if let Operator::Unknown(op) = &c.operator {
            return Err(DocumentError(format!(
                "unknown constraint operator `{op}` (on `{}`)",
                c.context_name
            )));
        }
    }
    if let Some(v) = s.variants.as_ref().filter(|v| !v.is_empty()) {
        let sum: i64 = v.iter().map(|v| i64::from(v.weight)).sum();
        if sum != 1000 || v.iter().any(|v| v.weight < 0) {
            return Err(DocumentError(format!(
                "the variant weights of strategy `{}` sum to {sum}; they must sum to 1000",
                s.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(v: Value) -> FlagDefinition {
        FlagDefinition::from_json(&v).expect("flag")
    }

    #[test]
    fn strict_authoring_refuses_what_lenient_import_accepts() {
        let none = HashMap::new();
        let bad_op = flag(json!({"name": "a", "enabled": true, "strategies": [
            {"name": "default", "constraints": [{"contextName": "x", "operator": "LIKE", "values": ["y"]}]}
        ]}));
        assert!(validate_authored(&bad_op, &none).is_err());
        let weights = flag(json!({"name": "a", "enabled": true, "variants": [
            {"name": "x", "weight": 500}, {"name": "y", "weight": 400}
        ]}));
        assert!(validate_authored(&weights, &none).is_err());
        let ok = flag(json!({"name": "a", "enabled": true, "variants": [
            {"name": "x", "weight": 500}, {"name": "y", "weight": 500}
        ], "strategies": [{"name": "tenantPlan", "parameters": {"plans": "pro"}}]}));
        validate_authored(&ok, &none).expect("valid");
        // a → b → a
        let b = flag(json!({"name": "b", "enabled": true, "dependencies": [{"feature": "a"}]}));
        let a = flag(json!({"name": "a", "enabled": true, "dependencies": [{"feature": "b"}]}));
        let others = HashMap::from([("b".to_owned(), b)]);
        assert!(validate_authored(&a, &others).is_err());
        // The same documents import.
        let doc = json!({"version": 2, "features": [bad_op.to_json(), weights.to_json()]});
        assert_eq!(
            bad_op.to_json()["strategies"][0]["constraints"][0]["operator"],
            "LIKE"
        );
        assert_eq!(parse_import(&doc).expect("lenient").flags.len(), 2);
    }

    #[test]
    fn tenant_strategies_become_constraints() {
        let f = flag(json!({"name": "a", "enabled": true, "strategies": [
            {"name": "tenantIds", "parameters": {"tenantIds": "t1, t2"}}
        ]}));
        let c = to_client_features(&[f], &[]);
        let s = &c.features[0].strategies.as_ref().expect("strategies")[0];
        assert_eq!(s.name, "default");
        let con = &s.constraints.as_ref().expect("constraints")[0];
        assert_eq!(con.context_name, TENANT_ID);
        assert_eq!(
            con.values.as_deref(),
            Some(&["t1".to_owned(), "t2".to_owned()][..])
        );
    }
}
