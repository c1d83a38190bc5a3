//! Evaluation cost: one flag with a gradual rollout and two constraints, evaluated for a
//! request's context, next to a baseline in the same run (the cheapest possible check: a hash
//! lookup of a boolean by flag name). `cargo bench -p flags --bench evaluate`.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flags::document::parse_import;
use flags::eval::{Environment, FlagContext, Flags, Snapshot};
use serde_json::json;
use unleash_types::client_features::Context;

fn evaluator() -> Flags {
    let doc = json!({"version": 2, "features": [
        {"name": "rollout", "enabled": true, "strategies": [{"name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "rollout"},
            "constraints": [
                {"contextName": "tenantPlan", "operator": "IN", "values": ["pro", "enterprise"]},
                {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "1.2.0"}
            ]}]}
    ]});
    let imported = parse_import(&doc).expect("document");
    let flags = Flags::new("production");
    let mut s = Snapshot::default();
    for i in 0..50 {
        // Fifty other flags in the snapshot, as a real one would hold.
        let other = parse_import(&json!({"version": 2, "features": [
            {"name": format!("other-{i}"), "enabled": true, "strategies": [{"name": "default"}]}
        ]}))
        .expect("other");
        s.environments.insert(
            format!("env-{i}"),
            Environment::compile(&other.flags, &other.segments),
        );
    }
    s.environments.insert(
        "production".into(),
        Environment::compile(&imported.flags, &imported.segments),
    );
    flags.replace(s);
    flags
}

fn bench(c: &mut Criterion) {
    let flags = evaluator();
    let ctx = FlagContext::without_tenant(
        "benchmark",
        Context {
            user_id: Some("user-12345".into()),
            properties: Some(HashMap::from([
                ("tenantPlan".to_owned(), "pro".to_owned()),
                ("appVersion".to_owned(), "1.4.2".to_owned()),
            ])),
            ..Context::default()
        },
    );
    assert!(
        flags.is_enabled("rollout", &ctx) || !flags.is_enabled("rollout", &ctx),
        "evaluates"
    );
    let mut g = c.benchmark_group("flag");
    g.bench_function("rollout + 2 constraints (platform)", |b| {
        b.iter(|| flags.is_enabled(black_box("rollout"), black_box(&ctx)));
    });
    let baseline: HashMap<String, bool> = (0..50)
        .map(|i| (format!("other-{i}"), true))
        .chain([("rollout".to_owned(), true)])
        .collect();
    g.bench_function("hash lookup of a boolean (baseline)", |b| {
        b.iter(|| baseline.get(black_box("rollout")).copied().unwrap_or(false));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
