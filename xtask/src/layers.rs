//! `cargo xtask layers`: the workspace's dependency rules, checked from the sources.
//!
//! 1. Crates depend one way. Each workspace crate may depend (in `[dependencies]`) only on the
//!    crates [`ALLOWED`] lists for it, so a lower crate that starts depending on a higher one
//!    (say `tenancy` on `identity`) fails CI. Cargo already refuses crate cycles; this refuses
//!    the wrong direction.
//! 2. No module cycles inside a crate. Every `crate::…` and `super::…` path in a module is an
//!    edge to the module it names; two modules where neither contains the other (siblings,
//!    cousins) must not reach each other through any chain of such edges. A module and its own
//!    children are one unit (a child file extends its parent), so edges between them do not
//!    count. Test modules (`#[cfg(test)] mod tests`) are skipped.
//!
//! A text scan, not a compiler pass: good enough for this codebase's one-`use`-per-path style,
//! and it fails loudly (names the cycle or the edge) rather than silently passing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Workspace crates (by package name) and what each may depend on.
pub const ALLOWED: &[(&str, &str, &[&str])] = &[
    // (package, folder, allowed workspace dependencies)
    ("tenancy", "tenancy", &[]),
    ("jobs", "jobs", &["tenancy"]),
    ("email", "email", &["tenancy", "jobs"]),
    ("identity", "identity", &["tenancy", "limits", "jobs"]),
    ("audit", "audit", &["tenancy"]),
    ("limits", "limits", &["tenancy"]),
    ("flags", "flags", &["tenancy"]),
    ("billing", "billing", &["tenancy", "jobs", "audit"]),
    ("sso", "sso", &["tenancy", "identity"]),
    (
        "platform",
        "platform",
        &[
            "tenancy", "identity", "audit", "limits", "flags", "sso", "jobs", "email", "billing",
        ],
    ),
    (
        "ops",
        "ops",
        &["tenancy", "identity", "audit", "flags", "jobs"],
    ),
    (
        "bench",
        "bench",
        &[
            "tenancy",
            "identity",
            "audit",
            "limits",
            "flags",
            "sso",
            "platform",
            "platform-tests",
            "jobs",
        ],
    ),
    (
        "platform-tests",
        "tests",
        &[
            "tenancy", "identity", "audit", "limits", "flags", "sso", "platform", "jobs", "email",
            "billing",
        ],
    ),
    ("xtask", "xtask", &[]),
];

/// Runs both checks from the workspace root; returns the problems found.
pub fn check(root: &Path) -> Vec<String> {
    let mut problems = crate_edges(root);
    for (_, dir, _) in ALLOWED {
        let src = root.join(dir).join("src");
        if src.is_dir() {
            problems.extend(module_cycles(dir, &src));
        }
    }
    problems
}

fn crate_edges(root: &Path) -> Vec<String> {
    let names: BTreeSet<&str> = ALLOWED.iter().map(|(n, _, _)| *n).collect();
    let mut problems = Vec::new();
    let members = fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    for (name, dir, allowed) in ALLOWED {
        let manifest = root.join(dir).join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            problems.push(format!("{}: missing", manifest.display()));
            continue;
        };
        if !members.contains(&format!("\"{dir}\"")) {
            problems.push(format!("crate `{name}` ({dir}/) is not a workspace member"));
        }
        for dep in normal_dependencies(&text) {
            if names.contains(dep.as_str()) && !allowed.contains(&dep.as_str()) {
                problems.push(format!(
                    "crate `{name}` depends on `{dep}`, which is not below it (allowed: {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
    }
    // Every workspace member is in the table.
    for line in members
        .lines()
        .filter(|l| l.trim_start().starts_with("members"))
    {
        for dir in line.split('"').skip(1).step_by(2) {
            if !ALLOWED.iter().any(|(_, d, _)| d == &dir) {
                problems.push(format!(
                    "workspace member `{dir}` has no row in xtask's ALLOWED table"
                ));
            }
        }
    }
    problems
}

/// Names in `[dependencies]` (not dev- or build-dependencies).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps && !t.is_empty() && !t.starts_with('#') {
            let key = t.split(['=', '.', ' ']).next().unwrap_or("").trim();
            if !key.is_empty() {
                out.push(key.to_owned());
            }
        }
    }
    out
}

type ModPath = Vec<String>;

fn module_cycles(krate: &str, src: &Path) -> Vec<String> {
    let mut mods: BTreeMap<ModPath, String> = BTreeMap::new();
    collect(src, src, &mut mods);
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (m, text) in &mods {
        let text = strip_tests(text);
        for (is_super, segs) in paths(&text) {
            let mut target: ModPath = if is_super {
                m[..m.len().saturating_sub(1)].to_vec()
            } else {
                Vec::new()
            };
            target.extend(segs);
            while !target.is_empty() && !mods.contains_key(&target) {
                target.pop();
            }
            if target.is_empty() || &target == m || target.starts_with(m) || m.starts_with(&target)
            {
                continue;
            }
            edges.entry(m.clone()).or_default().insert(target);
        }
    }
    strongly_connected(&mods.keys().cloned().collect::<Vec<_>>(), &edges)
        .into_iter()
        .map(|comp| {
            let names: Vec<String> = comp.iter().map(|m| m.join("::")).collect();
            let detail: Vec<String> = comp
                .iter()
                .flat_map(|a| {
                    edges
                        .get(a)
                        .into_iter()
                        .flatten()
                        .filter(|b| comp.contains(b))
                        .map(move |b| format!("{} -> {}", a.join("::"), b.join("::")))
                })
                .collect();
            format!(
                "module cycle in `{krate}`: {} ({})",
                names.join(", "),
                detail.join("; ")
            )
        })
        .collect()
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<ModPath, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap_or(&p).with_extension("");
            let mut segs: ModPath = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(
                segs.last().map(String::as_str),
                Some("lib" | "main" | "mod")
            ) {
                segs.pop();
            }
            out.insert(segs, fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

/// The text before a `#[cfg(test)]` item (test modules sit at the end of a file here).
fn strip_tests(text: &str) -> String {
    text.find("#[cfg(test)]")
        .map_or(text, |i| &text[..i])
        .to_owned()
}

/// Every `crate::a::b…` (false) and `super::a…` (true) path: its segments after the first.
fn paths(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (start, is_super) in [("crate::", false), ("super::", true)] {
            let mut rest = code;
            while let Some(i) = rest.find(start) {
                let before = rest[..i].chars().last();
                let tail = &rest[i + start.len()..];
                rest = tail;
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                    continue;
                }
                let segs: Vec<String> = tail
                    .split("::")
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|s| {
                        !s.is_empty() && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    })
                    .collect();
                out.push((is_super, segs));
            }
        }
    }
    out
}

/// Tarjan's algorithm: the components with more than one module.
fn strongly_connected(
    nodes: &[ModPath],
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        next: usize,
        out: Vec<Vec<ModPath>>,
    }
    fn visit(s: &mut State<'_>, v: &ModPath) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        let targets: Vec<ModPath> = s.edges.get(v).into_iter().flatten().cloned().collect();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for n in nodes {
        if !s.index.contains_key(n) {
            visit(&mut s, n);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sibling_cycle_is_found_and_a_parent_child_pair_is_not() {
        let dir = std::env::temp_dir().join(format!("layers-test-{}", std::process::id()));
        let src = dir.join("src");
        fs::create_dir_all(src.join("a")).expect("mkdir");
        fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").expect("write");
        fs::write(
            src.join("a.rs"),
            "mod child;\nuse crate::b::X;\nuse child::Y;\n",
        )
        .expect("write");
        fs::write(src.join("a/child.rs"), "use super::Z;\n").expect("write");
        fs::write(src.join("b.rs"), "use crate::a::W;\n").expect("write");
        let found = module_cycles("demo", &src);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("a -> b") && found[0].contains("b -> a"),
            "{found:?}"
        );
        fs::write(src.join("b.rs"), "pub struct X;\n").expect("write");
        assert!(module_cycles("demo", &src).is_empty());
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_lower_crate_depending_on_a_higher_one_is_refused() {
        let deps = normal_dependencies(
            "[package]\nname = \"tenancy\"\n[dependencies]\nidentity.workspace = true\nserde = \"1\"\n[dev-dependencies]\nplatform.workspace = true\n",
        );
        assert_eq!(deps, vec!["identity".to_owned(), "serde".to_owned()]);
    }
}
