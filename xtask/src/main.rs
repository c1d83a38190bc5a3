//! `cargo xtask`: the README's two commands, which set up a fresh machine before they run.
//!
//! - `cargo xtask run [-- ARGS]`: installs what building and running need (PostgreSQL server
//!   binaries, libclang and the xmlsec/libxml2/OpenSSL headers), then
//!   `cargo run --release -p platform -- ARGS`.
//! - `cargo xtask test [-- ARGS]`: the same, plus the test peers (xmlsec1, Python's venv, Node.js
//!   and npm, then `tests/peers/setup.sh`), then `cargo test --workspace ARGS`.
//! - `cargo xtask layers`: crates depend only on the crates below them, and no two modules of a
//!   crate reach each other (`layers.rs`).
//! - `cargo xtask ci`: `cargo fmt --check`, `layers`, then the test prerequisites, cargo-deny
//!   (`.ci/deny.sh`), `cargo clippy -D warnings`, `promtool check rules` and `promtool test rules`
//!   on `deploy/observability/`, schemathesis against the real server
//!   (`tests/schemathesis/run.sh`) and the tests; `.ci/run` is this command.
//!
//! Standard library only: on a machine with nothing but the Rust toolchain this builds in seconds,
//! before anything it installs is needed. The alias lives in `.cargo/config.toml`.

mod layers;
mod prereqs;
mod process;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use prereqs::Purpose;
use process::{exec, run, step};

const USAGE: &str = "\
usage: cargo xtask <command> [-- ARGS]

commands:
  run [-- ARGS]    install what is missing, then `cargo run --release -p platform -- ARGS`
  test [-- ARGS]   install what is missing (with the test peers), then `cargo test --workspace ARGS`
                   (ARGS naming -p/--package replace --workspace; `-- --nocapture` needs `-- -- --nocapture`)
  layers           check that crates depend one way and no module cycle exists
  ci               cargo fmt --check and `layers`, then as `test` with cargo clippy -D warnings
                   before the tests

Missing Debian packages are installed with apt-get when running as root; otherwise the command
names them and stops.";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Task {
    Run(Vec<OsString>),
    Test(Vec<OsString>),
    Ci,
    Layers,
    Help,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Task, String> {
    let Some(command) = args.next() else {
        return Ok(Task::Help);
    };
    let mut rest: Vec<OsString> = args.collect();
    // `cargo xtask test -- ARGS` and `cargo xtask test ARGS` mean the same.
    if rest.first().is_some_and(|a| a == "--") {
        rest.remove(0);
    }
    match command.to_str() {
        Some("run") => Ok(Task::Run(rest)),
        Some("test") => Ok(Task::Test(rest)),
        Some("ci") if rest.is_empty() => Ok(Task::Ci),
        Some("ci") => Err("`ci` takes no arguments".into()),
        Some("layers") if rest.is_empty() => Ok(Task::Layers),
        Some("layers") => Err("`layers` takes no arguments".into()),
        Some("help" | "-h" | "--help") => Ok(Task::Help),
        _ => Err(format!("unknown command {command:?}")),
    }
}

/// `cargo test` arguments: the whole workspace unless ARGS pick packages themselves.
fn test_args(extra: Vec<OsString>) -> Vec<OsString> {
    let picks_packages = extra.iter().take_while(|a| *a != "--").any(|a| {
        let a = a.to_string_lossy();
        a == "-p" || a == "--package" || a.starts_with("--package=") || a == "--workspace"
    });
    let mut args = vec![OsString::from("test")];
    if !picks_packages {
        args.push("--workspace".into());
    }
    args.extend(extra);
    args
}

/// The workspace root: xtask is built from the checkout it serves.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo that started us (cargo sets `CARGO` for `cargo run`), in the workspace root.
fn cargo(args: impl IntoIterator<Item = impl Into<OsString>>) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(args.into_iter().map(Into::into)).current_dir(root());
    c
}

/// Installs the test peers from their registries (idempotent, cheap when already there).
fn peers() -> Result<(), String> {
    step(
        "installing the SSO test peers: bash tests/peers/setup.sh (oidc-provider from npm, pysaml2 from PyPI)",
    );
    let mut c = Command::new("bash");
    c.arg("tests/peers/setup.sh").current_dir(root());
    run(&mut c)
}

/// The layering rules (`layers.rs`): crates one way, no module cycles.
fn check_layers() -> Result<(), String> {
    step("checking the layering: crate dependencies one way, no module cycles");
    let problems = layers::check(&root());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("layering:\n  {}", problems.join("\n  ")))
    }
}

fn execute(task: Task) -> Result<(), String> {
    match task {
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Task::Run(args) => {
            prereqs::ensure(Purpose::Run)?;
            prereqs::data_dir_reachable(&root())?;
            let mut all: Vec<OsString> = ["run", "--release", "-p", "platform"]
                .map(OsString::from)
                .into();
            if !args.is_empty() {
                all.push("--".into());
                all.extend(args);
            }
            let mut c = cargo(all);
            step(&format!("starting the platform: {}", process::show(&c)));
            exec(&mut c)
        }
        Task::Test(args) => {
            prereqs::ensure(Purpose::Test)?;
            peers()?;
            // Tests start the real binary as a second server process (tests/support/process.rs).
            let mut build = cargo(["build", "-p", "platform"]);
            step(&format!("building the server: {}", process::show(&build)));
            run(&mut build)?;
            let mut c = cargo(test_args(args));
            step(&format!("running the tests: {}", process::show(&c)));
            exec(&mut c)
        }
        Task::Layers => check_layers(),
        Task::Ci => {
            let mut fmt = cargo(["fmt", "--all", "--", "--check"]);
            step(&format!("checking formatting: {}", process::show(&fmt)));
            run(&mut fmt)?;
            check_layers()?;
            prereqs::ensure(Purpose::Test)?;
            let mut deny = Command::new("bash");
            deny.arg(".ci/deny.sh").current_dir(root());
            step(
                "checking the supply chain (licences, bans, sources, advisories): bash .ci/deny.sh",
            );
            run(&mut deny)?;
            let mut clippy = cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            step(&format!("linting: {}", process::show(&clippy)));
            run(&mut clippy)?;
            alert_rules()?;
            peers()?;
            let mut build = cargo(["build", "-p", "platform"]);
            step(&format!(
                "building the server for schemathesis: {}",
                process::show(&build)
            ));
            run(&mut build)?;
            let mut fuzz = Command::new("bash");
            fuzz.arg("tests/schemathesis/run.sh").current_dir(root());
            step(
                "fuzzing the real server from its OpenAPI document: bash tests/schemathesis/run.sh",
            );
            run(&mut fuzz)?;
            // Last, so the test runner's summary closes the output.
            let mut c = cargo(test_args(Vec::new()));
            step(&format!("running the tests: {}", process::show(&c)));
            exec(&mut c)
        }
    }
}

/// The alerting rules in `deploy/observability/`: `promtool check rules`, then their unit tests
/// (synthetic series) with `promtool test rules`.
fn alert_rules() -> Result<(), String> {
    let dir = root().join("deploy/observability");
    let mut check = Command::new("promtool");
    check
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir);
    step(&format!(
        "checking the alert rules: {}",
        process::show(&check)
    ));
    run(&mut check)?;
    let mut tests: Vec<String> = std::fs::read_dir(dir.join("tests"))
        .map_err(|e| format!("deploy/observability/tests: {e}"))?
        .filter_map(Result::ok)
        .map(|e| format!("tests/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".yml"))
        .collect();
    tests.sort();
    let mut test = Command::new("promtool");
    test.args(["test", "rules"]).args(&tests).current_dir(&dir);
    step(&format!(
        "testing the alert rules: {}",
        process::show(&test)
    ));
    run(&mut test)
}

fn main() -> ExitCode {
    let task = match parse(std::env::args_os().skip(1)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xtask: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match execute(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = OsString> {
        a.iter().map(OsString::from).collect::<Vec<_>>().into_iter()
    }

    fn strings(v: &[OsString]) -> Vec<&str> {
        v.iter().filter_map(|a| a.to_str()).collect()
    }

    #[test]
    fn arguments_after_the_separator_pass_through() {
        assert_eq!(
            parse(args(&["run", "--", "--help"])),
            Ok(Task::Run(vec!["--help".into()]))
        );
        assert_eq!(
            parse(args(&["test", "api::auth"])),
            Ok(Task::Test(vec!["api::auth".into()]))
        );
        assert_eq!(parse(args(&[])), Ok(Task::Help));
        assert!(parse(args(&["ci", "x"])).is_err());
        assert!(parse(args(&["deploy"])).is_err());
    }

    #[test]
    fn tests_cover_the_workspace_unless_arguments_pick_packages() {
        assert_eq!(
            strings(&test_args(vec!["login".into()])),
            ["test", "--workspace", "login"]
        );
        assert_eq!(
            strings(&test_args(vec![
                "-p".into(),
                "platform-tests".into(),
                "--test".into(),
                "api".into()
            ])),
            ["test", "-p", "platform-tests", "--test", "api"]
        );
        // After `--` the arguments belong to the test binary, not to cargo.
        assert_eq!(
            strings(&test_args(vec!["--".into(), "-p".into()])),
            ["test", "--workspace", "--", "-p"]
        );
    }
}
