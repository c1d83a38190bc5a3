//! Percentage rollouts: over 100,000 user ids a 30% rollout lands within ±1% of its target, the
//! same users are in on every evaluation and in a freshly built evaluator (a restart), and
//! tenant stickiness keeps a whole tenant on one side.

use std::collections::HashMap;

use flags::document::parse_import;
use flags::eval::{Environment, FlagContext, Flags, Snapshot};
use serde_json::json;
use unleash_types::client_features::Context;

fn evaluator() -> Flags {
    let doc = json!({"version": 2, "features": [
        {"name": "rollout", "enabled": true, "strategies": [{"name": "flexibleRollout",
            "parameters": {"rollout": "30", "stickiness": "userId", "groupId": "rollout"}}]},
        {"name": "by-tenant", "enabled": true, "strategies": [{"name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "tenantId", "groupId": "by-tenant"}}]}
    ]});
    let imported = parse_import(&doc).expect("document");
    let flags = Flags::new("production");
    let mut s = Snapshot::default();
    s.environments.insert(
        "production".into(),
        Environment::compile(&imported.flags, &imported.segments),
    );
    flags.replace(s);
    flags
}

fn user(id: u32, tenant: u32) -> FlagContext {
    FlagContext::without_tenant(
        "rollout test",
        Context {
            user_id: Some(format!("user-{id}")),
            properties: Some(HashMap::from([(
                "tenantId".to_owned(),
                format!("tenant-{tenant}"),
            )])),
            ..Context::default()
        },
    )
}

#[test]
fn a_rollout_hits_its_target_and_is_stable_across_restarts() {
    const N: u32 = 100_000;
    let first = evaluator();
    let ins: Vec<bool> = (0..N)
        .map(|i| first.is_enabled("rollout", &user(i, 0)))
        .collect();
    let share = ins.iter().filter(|b| **b).count() as f64 / f64::from(N);
    assert!(
        (0.29..=0.31).contains(&share),
        "30% rollout reached {:.2}%",
        share * 100.0
    );
    let restarted = evaluator();
    let again: Vec<bool> = (0..N)
        .map(|i| restarted.is_enabled("rollout", &user(i, 0)))
        .collect();
    assert_eq!(ins, again, "a restart moved users across the rollout");
}

#[test]
fn tenant_stickiness_keeps_a_tenant_together() {
    let flags = evaluator();
    let mut tenants_on = 0;
    for t in 0..200 {
        let sides: std::collections::BTreeSet<bool> = (0..50)
            .map(|u| flags.is_enabled("by-tenant", &user(u, t)))
            .collect();
        assert_eq!(sides.len(), 1, "tenant {t} is split");
        tenants_on += usize::from(sides.contains(&true));
    }
    // About half of the tenants, not all or none.
    assert!(
        (70..=130).contains(&tenants_on),
        "{tenants_on} of 200 tenants"
    );
}

#[test]
fn evaluations_are_counted_on_off_and_by_variant() {
    let doc = json!({"version": 2, "features": [
        {"name": "colours", "enabled": true, "strategies": [{"name": "default"}],
            "variants": [{"name": "red", "weight": 500, "stickiness": "userId"},
                         {"name": "blue", "weight": 500, "stickiness": "userId"}]},
        {"name": "dark", "enabled": false}
    ]});
    let imported = parse_import(&doc).expect("document");
    let flags = Flags::new("production");
    let mut s = Snapshot::default();
    s.environments.insert(
        "production".into(),
        Environment::compile(&imported.flags, &imported.segments),
    );
    flags.replace(s);
    for i in 0..200 {
        assert_eq!(flags.evaluate(None, &user(i, 0), None).len(), 2);
    }
    let counts = flags.counts();
    assert!(
        counts.contains(&("colours".to_owned(), 200, 0)),
        "{counts:?}"
    );
    assert!(counts.contains(&("dark".to_owned(), 0, 200)), "{counts:?}");
    let variants = flags.variant_counts();
    let total: u64 = variants.iter().map(|(_, _, n)| n).sum();
    assert_eq!(total, 200, "{variants:?}");
    for v in ["red", "blue"] {
        let n = variants
            .iter()
            .find(|(f, name, _)| f == "colours" && name == v)
            .map_or(0, |x| x.2);
        assert!((60..=140).contains(&n), "{v}: {n} of 200");
    }
}
