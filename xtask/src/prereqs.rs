//! What building, running and testing need from the machine, how to tell whether it is there, and
//! the Debian package that provides it. Detection looks at the machine itself (commands on PATH,
//! files, `dpkg-query`), so something installed another way counts as present. Whatever is
//! missing is installed in one `apt-get update` + `apt-get install` when running as root.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::process::{run, step};

/// What the prerequisites are for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Build and run the platform.
    Run,
    /// Build everything and run the tests against their real peers.
    Test,
}

/// One prerequisite.
struct Need {
    /// What it is, for messages.
    what: &'static str,
    /// The Debian package that provides it.
    package: &'static str,
    present: fn() -> bool,
}

/// Building (samael: bindgen needs libclang; xmlsec, libxml2 and OpenSSL through pkg-config) and
/// running (the embedded PostgreSQL, started as the `postgres` user through `runuser`).
const RUN: &[Need] = &[
    need(
        "postgresql",
        "PostgreSQL server binaries and the postgres user",
        || postgres_binaries() && user_exists("postgres"),
    ),
    need("util-linux", "runuser", || on_path("runuser")),
    need("libclang-dev", "libclang for bindgen, for samael", || {
        std::env::var_os("LIBCLANG_PATH").is_some() || installed("libclang-dev")
    }),
    need("libxmlsec1-dev", "xmlsec1 headers", || {
        installed("libxmlsec1-dev")
    }),
    need("libxml2-dev", "libxml2 headers", || {
        installed("libxml2-dev")
    }),
    need("libssl-dev", "OpenSSL headers", || installed("libssl-dev")),
    need("pkg-config", "pkg-config", || on_path("pkg-config")),
];

/// The test peers: pysaml2 signs with the xmlsec1 binary and lives in a virtualenv; oidc-provider
/// runs on Node.js and is installed with npm.
const TEST: &[Need] = &[
    need("xmlsec1", "xmlsec1, with which the SAML peer signs", || {
        on_path("xmlsec1")
    }),
    need("python3", "python3", || on_path("python3")),
    need(
        "python3-venv",
        "Python's venv with ensurepip, for the SAML peer",
        python_venv,
    ),
    need(
        "nodejs",
        "Node.js 20.18 or newer, for the OIDC peer (oidc-provider 9)",
        node_recent,
    ),
    need("npm", "npm, to install the OIDC peer", || on_path("npm")),
    need(
        "prometheus",
        "Prometheus and promtool: the metrics tests scrape with it, CI checks the alert rules",
        || on_path("prometheus") && on_path("promtool"),
    ),
];

const fn need(package: &'static str, what: &'static str, present: fn() -> bool) -> Need {
    Need {
        what,
        package,
        present,
    }
}

fn needs(purpose: Purpose) -> impl Iterator<Item = &'static Need> {
    let test: &[Need] = match purpose {
        Purpose::Run => &[],
        Purpose::Test => TEST,
    };
    RUN.iter().chain(test)
}

/// Checks every prerequisite of `purpose` and installs the missing ones, or says exactly what to
/// install and fails when it cannot (not root, or no apt-get).
pub fn ensure(purpose: Purpose) -> Result<(), String> {
    let names: Vec<&str> = needs(purpose).map(|n| n.package).collect();
    step(&format!("checking prerequisites: {}", names.join(" ")));
    let missing: Vec<&Need> = needs(purpose).filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let listed = missing
        .iter()
        .map(|n| format!("{} ({})", n.package, n.what))
        .collect::<Vec<_>>()
        .join(", ");
    let command = format!("apt-get install -y {}", packages.join(" "));
    if !on_path("apt-get") {
        return Err(format!(
            "missing: {listed}. This is not a Debian-like system: install the equivalents of \
             these Debian packages, then rerun: {}",
            packages.join(" ")
        ));
    }
    if !is_root() {
        return Err(format!(
            "missing: {listed}. Install them as root, then rerun:\n    sudo apt-get update && sudo {command}"
        ));
    }
    step(&format!("missing: {listed}"));
    step("updating the package lists: apt-get update");
    run(apt().args(["update", "-qq"]))?;
    step(&format!("installing: {command}"));
    run(apt()
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&packages))?;
    let still: Vec<&str> = missing
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.what)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "still missing after `{command}`: {}. Install {} another way (a newer release from \
             its vendor), then rerun",
            still.join(", "),
            if still.len() == 1 { "it" } else { "them" }
        ))
    }
}

/// Running as root, the embedded PostgreSQL runs as `postgres`, which must be able to reach the
/// data directory (`PLATFORM_DATA_DIR`, default `./.platform` in the checkout). A checkout under a
/// private directory such as `/root` would only fail at start-up, after the release build: say so
/// now. Nothing to check when the platform uses external databases.
pub fn data_dir_reachable(checkout: &Path) -> Result<(), String> {
    if !is_root() || std::env::var_os("PLATFORM_DATABASE_URL").is_some() {
        return Ok(());
    }
    let dir = std::env::var_os("PLATFORM_DATA_DIR")
        .map_or_else(|| checkout.join(".platform"), |d| checkout.join(d));
    let closed = dir.ancestors().skip(1).find(|a| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0)
    });
    match closed {
        None => Ok(()),
        Some(a) => Err(format!(
            "the embedded PostgreSQL runs as user `postgres`, which cannot traverse {} (no o+x) to \
             reach its data directory {}: run `chmod o+x {}`, set PLATFORM_DATA_DIR to a \
             directory it can reach (such as /var/lib/platform), or clone elsewhere (such as \
             under /work or /srv)",
            a.display(),
            dir.display(),
            a.display()
        )),
    }
}

fn apt() -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "Dpkg::Use-Pty=0"]);
    c
}

/// A command on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// `initdb` and `pg_ctl` on PATH, or under Debian's versioned directory (where the embedded
/// default and the test harness look for them too).
fn postgres_binaries() -> bool {
    if on_path("initdb") && on_path("pg_ctl") {
        return true;
    }
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions.flatten().any(|v| {
            let bin = v.path().join("bin");
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()
        })
    })
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|passwd| passwd.lines().any(|l| l.split(':').next() == Some(name)))
}

/// A Debian package is installed (`dpkg-query`). Without dpkg there is no telling: assume present
/// and let the build say what it lacks.
fn installed(package: &str) -> bool {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        return true;
    }
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

/// `python3 -m venv` works only with ensurepip, which Debian's python3 ships separately.
fn python_venv() -> bool {
    Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// oidc-provider 9 calls `URL.parse`, which Node.js has since 20.18 (and 22.1). Debian 12's own
/// `nodejs` is 18: where that is all apt offers, the check fails after installing and says why.
fn node_recent() -> bool {
    Command::new("node")
        .args(["-p", "process.versions.node"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| version_at_least(&String::from_utf8_lossy(&o.stdout), (20, 18)))
        .unwrap_or(false)
}

/// `major.minor[.patch]` at least `min`; `None` if it does not parse.
fn version_at_least(version: &str, min: (u32, u32)) -> Option<bool> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse::<u32>().ok()?;
    let minor = parts.next()?.parse::<u32>().ok()?;
    Some((major, minor) >= min)
}

/// Effective user id 0, read from `/proc/self/status` (no libc binding needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::version_at_least;

    #[test]
    fn node_versions_compare_by_major_then_minor() {
        assert_eq!(version_at_least("v20.20.2\n", (20, 18)), Some(true));
        assert_eq!(version_at_least("22.1.0", (20, 18)), Some(true));
        assert_eq!(version_at_least("18.20.4", (20, 18)), Some(false));
        assert_eq!(version_at_least("20.9.0", (20, 18)), Some(false));
        assert_eq!(version_at_least("garbage", (20, 18)), None);
    }
}
