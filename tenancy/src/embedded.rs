//! The embedded default: a local PostgreSQL cluster under the data dir, started from the machine's
//! server binaries (`initdb`, `pg_ctl`, `postgres`), reused across restarts, with
//! `wal_level=logical`. The test harness starts its throwaway clusters with the same code.
//!
//! PostgreSQL refuses to run as root; when this process is root, the binaries run as the
//! unprivileged `postgres` user (created by the Debian package) through `runuser`.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::crypto::random_token;

/// The unprivileged account the server binaries run as when we are root.
pub const PG_OS_USER: &str = "postgres";

/// Why the embedded cluster could not be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, through \
         `pg_config --bindir`, or under /usr/lib/postgresql/*/bin. Install the Debian package \
         `postgresql` (apt-get install postgresql), or point the platform at running servers with \
         PLATFORM_DATABASE_URL and PLATFORM_SHARED_DATABASE_URL"
    )]
    NoBinaries,
    #[error(
        "running as root, PostgreSQL must run as the unprivileged user `{PG_OS_USER}`, which does \
         not exist: install the Debian package `postgresql` (it creates the user) or run as a \
         normal user"
    )]
    NoOsUser,
    #[error(
        "PostgreSQL runs as user `{PG_OS_USER}` (it refuses to run as root) and that user cannot \
         reach {0}: make every parent directory traversable (chmod o+x) or set PLATFORM_DATA_DIR \
         to a directory it can reach, such as /var/lib/platform"
    )]
    Unreachable(PathBuf),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where the server binaries are.
#[derive(Clone, Debug)]
pub struct PgBinaries {
    bindir: PathBuf,
}

impl PgBinaries {
    /// Finds `initdb`/`pg_ctl`/`postgres` on PATH, through `pg_config --bindir`, or under
    /// `/usr/lib/postgresql/*/bin` (newest version first).
    pub fn find() -> Result<Self, EmbeddedError> {
        let complete = |dir: &Path| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| dir.join(b).is_file())
        };
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versioned.into_iter().map(|(_, p)| p));
        candidates
            .into_iter()
            .find(|d| complete(d))
            .map(|bindir| Self { bindir })
            .ok_or(EmbeddedError::NoBinaries)
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// True when this process runs as root (PostgreSQL will not).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command for a server binary, run as `postgres` when we are root.
fn pg_command(program: &Path, as_other_user: bool) -> Command {
    if as_other_user {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_OS_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<String, EmbeddedError> {
    let out = cmd.output().map_err(|e| EmbeddedError::Command {
        what: what.into(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        Err(EmbeddedError::Command {
            what: what.into(),
            detail,
        })
    }
}

/// What a cluster's server is tuned for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerProfile {
    /// Crash-safe (`fsync=on`): what the embedded default and every real deployment run with.
    #[default]
    Durable,
    /// Throwaway clusters (the test harness), whose directories are deleted when their process
    /// ends: `fsync`, `synchronous_commit` and `full_page_writes` off (an operating-system crash
    /// can lose or corrupt the whole cluster), logical-replication workers started at once
    /// rather than up to 5 s later (`wal_retrieve_retry_interval`), and room for the workers of
    /// several moves at a time.
    Throwaway,
}

impl ServerProfile {
    fn server_options(self) -> &'static str {
        match self {
            Self::Durable => "-c fsync=on",
            Self::Throwaway => {
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c wal_retrieve_retry_interval=50ms -c max_worker_processes=32 \
                 -c max_logical_replication_workers=16 -c max_sync_workers_per_subscription=4"
            }
        }
    }
}

/// A running local cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    password: String,
    bins: PgBinaries,
    as_other_user: bool,
    started_here: bool,
    profile: ServerProfile,
}

impl Cluster {
    /// Starts the cluster kept in `data_dir/pg` (creating it on first use), or attaches to it if it
    /// is already running (a previous run that did not stop it, or `platformctl` beside a server).
    pub fn ensure_running(data_dir: &Path) -> Result<Self, EmbeddedError> {
        Self::ensure_running_with(data_dir, ServerProfile::Durable)
    }

    /// [`Self::ensure_running`], starting the server (if this call starts it) with `profile`.
    pub fn ensure_running_with(
        data_dir: &Path,
        profile: ServerProfile,
    ) -> Result<Self, EmbeddedError> {
        let bins = PgBinaries::find()?;
        let as_other_user = running_as_root();
        std::fs::create_dir_all(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let dir = data_dir.join("pg");
        let pw_file = data_dir.join("pg-superuser-password");
        if as_other_user
            && Command::new("id")
                .arg(PG_OS_USER)
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        {
            return Err(EmbeddedError::NoOsUser);
        }
        if !dir.join("PG_VERSION").is_file() {
            Self::init(&bins, &dir, &pw_file, as_other_user)?;
        }
        let password = std::fs::read_to_string(&pw_file)?.trim().to_owned();
        let mut cluster = Self {
            dir,
            port: 0,
            password,
            bins,
            as_other_user,
            started_here: false,
            profile,
        };
        if let Some(port) = cluster.running_port() {
            cluster.port = port;
            return Ok(cluster);
        }
        cluster.start()?;
        Ok(cluster)
    }

    fn init(
        bins: &PgBinaries,
        dir: &Path,
        pw_file: &Path,
        as_other_user: bool,
    ) -> Result<(), EmbeddedError> {
        // No PG_VERSION: nothing, or what a failed initdb left. Either way, start clean.
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let password = random_token(24);
        write_private(pw_file, &password)?;
        // initdb reads the password from a file the server user can read; it is removed after.
        let init_pw = pw_file.with_file_name(".initdb-pw");
        write_private(&init_pw, &password)?;
        if as_other_user {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", &format!("{PG_OS_USER}:")]).arg(dir);
                    c
                },
                "chown of the cluster directory",
            )?;
            let reach = pg_command(Path::new("test"), true)
                .arg("-w")
                .arg(dir)
                .status()?;
            if !reach.success() {
                return Err(EmbeddedError::Unreachable(dir.to_path_buf()));
            }
        }
        let mut cmd = pg_command(&bins.bin("initdb"), as_other_user);
        cmd.arg("-D").arg(dir).args([
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        cmd.arg(format!("--pwfile={}", init_pw.display()));
        let result = run(cmd, "initdb");
        std::fs::remove_file(&init_pw).ok();
        result.map(|_| ())
    }

    fn start(&mut self) -> Result<(), EmbeddedError> {
        self.port = free_port()?;
        let log = self.dir.join("server.log");
        let mut cmd = pg_command(&self.bins.bin("pg_ctl"), self.as_other_user);
        cmd.arg("start").arg("-D").arg(&self.dir).arg("-w").arg("-t").arg("60").arg("-l").arg(&log).arg("-o").arg(
            format!(
                "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c wal_level=logical \
                 -c max_connections=300 -c max_replication_slots=20 -c max_wal_senders=20 {}",
                self.port,
                self.profile.server_options()
            ),
        );
        run(cmd, "pg_ctl start").map_err(|e| match e {
            EmbeddedError::Command { what, detail } => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                EmbeddedError::Command {
                    what,
                    detail: format!("{detail}; server log: {}", tail.join(" | ")),
                }
            }
            other => other,
        })?;
        self.started_here = true;
        Ok(())
    }

    /// The port of a server already running on this cluster directory, if any.
    fn running_port(&self) -> Option<u16> {
        let mut cmd = pg_command(&self.bins.bin("pg_ctl"), self.as_other_user);
        cmd.arg("status").arg("-D").arg(&self.dir);
        run(cmd, "pg_ctl status").ok()?;
        let pid_file = std::fs::read_to_string(self.dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    /// Stops the server (fast shutdown: running transactions are rolled back).
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        let mut cmd = pg_command(&self.bins.bin("pg_ctl"), self.as_other_user);
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w"]);
        run(cmd, "pg_ctl stop").map(|_| ())
    }

    /// Restarts the server on the same port and options. `immediate` stops it as a crash would
    /// (no checkpoint; recovery replays the WAL at start); otherwise a fast shutdown.
    pub fn restart(&self, immediate: bool) -> Result<(), EmbeddedError> {
        let mut cmd = pg_command(&self.bins.bin("pg_ctl"), self.as_other_user);
        cmd.arg("restart")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args([
                "-m",
                if immediate { "immediate" } else { "fast" },
                "-w",
                "-t",
                "60",
            ]);
        run(cmd, "pg_ctl restart").map(|_| ())
    }

    /// Whether this call started the server (rather than attaching to a running one).
    #[must_use]
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A superuser URL for `database`.
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The command that stops this cluster, for a watchdog that outlives this process.
    #[must_use]
    pub fn stop_command_line(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.as_other_user {
            v.extend(["runuser", "-u", PG_OS_USER, "--"].map(String::from));
        }
        v.push(self.bins.bin("pg_ctl").display().to_string());
        v.extend(["stop", "-D"].map(String::from));
        v.push(self.dir.display().to_string());
        v.extend(["-m", "immediate"].map(String::from));
        v
    }
}

/// Writes a secret file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if running_as_root() && path.file_name() == Some(OsStr::new(".initdb-pw")) {
        run(
            {
                let mut c = Command::new("chown");
                c.arg(format!("{PG_OS_USER}:")).arg(path);
                c
            },
            "chown of the initdb password file",
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// A free TCP port on loopback (the kernel's choice).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
