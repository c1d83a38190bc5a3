//! Unleash's client specification (`@unleash/client-specification` from npm, installed by
//! `tests/peers/setup.sh`): every specification file's `state` is imported through our import
//! path (features or delta document), and every `isEnabled` and variant test is evaluated by our
//! evaluator. All of them must pass; nothing is skipped.

use std::path::PathBuf;

use flags::document::parse_import;
use flags::eval::{Environment, FlagContext, Flags, Snapshot};
use serde_json::Value;
use unleash_types::client_features::Context;

fn spec_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/peers/unleash/node_modules/@unleash/client-specification/specifications");
    assert!(
        dir.join("index.json").is_file(),
        "Unleash's client specification is not installed at {}: run `bash tests/peers/setup.sh` \
         (cargo xtask test does)",
        dir.display()
    );
    dir
}

fn read(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn flags_for(state: &Value) -> Flags {
    let imported = parse_import(state).expect("the specification's state imports");
    let flags = Flags::new("spec");
    let mut snapshot = Snapshot::default();
    snapshot.environments.insert(
        "spec".into(),
        Environment::compile(&imported.flags, &imported.segments),
    );
    flags.replace(snapshot);
    flags
}

fn context(v: &Value) -> FlagContext {
    let ctx: Context = serde_json::from_value(v.clone()).expect("an Unleash context");
    FlagContext::without_tenant("Unleash's client specification", ctx)
}

#[test]
fn every_unleash_client_specification_passes() {
    let dir = spec_dir();
    let index: Vec<String> = serde_json::from_value(read(&dir.join("index.json"))).expect("index");
    let (mut passed, mut failed) = (0usize, Vec::new());
    for file in &index {
        let spec = read(&dir.join(file));
        let flags = flags_for(&spec["state"]);
        for t in spec["tests"].as_array().into_iter().flatten() {
            let name = t["toggleName"].as_str().expect("toggleName");
            let got = flags.is_enabled(name, &context(&t["context"]));
            if Some(got) == t["expectedResult"].as_bool() {
                passed += 1;
            } else {
                failed.push(format!("{file}: {} (got {got})", t["description"]));
            }
        }
        for t in spec["variantTests"].as_array().into_iter().flatten() {
            let name = t["toggleName"].as_str().expect("toggleName");
            let toggle = flags
                .evaluate(None, &context(&t["context"]), Some(&[name.to_owned()]))
                .pop()
                .expect("one toggle");
            let want = &t["expectedResult"];
            let ok = want["name"].as_str() == Some(toggle.variant.name.as_str())
                && want["enabled"].as_bool() == Some(toggle.variant.enabled)
                && want
                    .get("feature_enabled")
                    .is_none_or(|f| f.as_bool() == Some(toggle.enabled))
                && want.get("payload").filter(|p| !p.is_null()) == toggle.variant.payload.as_ref();
            if ok {
                passed += 1;
            } else {
                failed.push(format!(
                    "{file}: {} (got {})",
                    t["description"],
                    serde_json::to_string(&toggle).unwrap_or_default()
                ));
            }
        }
    }
    println!(
        "Unleash client specification: {passed} passed, {} failed, {} files",
        failed.len(),
        index.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} specification tests failed:\n{}",
        failed.len(),
        passed + failed.len(),
        failed.join("\n")
    );
    // 6.1.0 ships 279 tests in 22 files; a newer version may add more, never fewer.
    assert!(passed >= 279, "only {passed} specification tests ran");
}
