//! What the benchmark watches besides latency: connections per PostgreSQL server (sampled from
//! `pg_stat_activity` while a cell runs, maximum kept) and a process's resident memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

/// Connections seen on one server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connections {
    /// The platform's data-plane role (`platform_app`): the shared pool or the dedicated pools.
    pub data_plane: i64,
    /// Every client backend (data plane, control-plane pool, baseline pool, this probe excluded).
    pub all: i64,
}

/// One superuser connection per server, for sampling.
pub struct ConnectionProbe {
    servers: Arc<[tokio_postgres::Client]>,
}

/// A sampling in progress; [`Sampling::stop`] returns the maxima per server.
pub struct Sampling {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Connections>>,
}

const QUERY: &str = "SELECT count(*) FILTER (WHERE usename = 'platform_app'), count(*)
                     FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";

impl ConnectionProbe {
    pub async fn connect(urls: &[String]) -> anyhow::Result<Self> {
        let mut servers = Vec::new();
        for u in urls {
            servers.push(crate::world::connect(u).await?);
        }
        Ok(Self {
            servers: servers.into(),
        })
    }

    /// Current counts per server.
    pub async fn sample(&self) -> anyhow::Result<Vec<Connections>> {
        sample(&self.servers).await
    }

    /// Samples every 200 ms until stopped.
    #[must_use]
    pub fn start(&self) -> Sampling {
        let servers = Arc::clone(&self.servers);
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut max = vec![Connections::default(); servers.len()];
            loop {
                if let Ok(now) = sample(&servers).await {
                    for (m, n) in max.iter_mut().zip(now) {
                        m.data_plane = m.data_plane.max(n.data_plane);
                        m.all = m.all.max(n.all);
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return max,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
        Sampling { stop, task }
    }
}

impl Sampling {
    pub async fn stop(self) -> Vec<Connections> {
        self.stop.send(()).ok();
        self.task.await.unwrap_or_default()
    }
}

async fn sample(servers: &[tokio_postgres::Client]) -> anyhow::Result<Vec<Connections>> {
    let mut out = Vec::with_capacity(servers.len());
    for s in servers {
        let row = s.query_one(QUERY, &[]).await?;
        out.push(Connections {
            data_plane: row.get(0),
            all: row.get(1),
        });
    }
    Ok(out)
}

/// A `/proc/{pid}/status` field in KiB (`VmRSS`, `VmHWM`), if readable.
#[must_use]
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Machine description: logical CPUs, total memory (GiB), CPU model.
#[must_use]
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {mem_gib:.0} GiB RAM, {model}")
}

/// Linux reports process CPU time in clock ticks of 1/100 s (`USER_HZ`).
pub const TICK_US: u64 = 10_000;

/// CPU time consumed so far by a process (all its threads), in ticks; with `reaped`, plus the CPU
/// of its children that have exited and been waited for.
fn process_ticks(stat: &str, reaped: bool) -> Option<u64> {
    // Fields after the command name (which may contain spaces): state, ppid, ..., utime (index
    // 11), stime, cutime, cstime.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    let n = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let own = n(11)? + n(12)?;
    Some(if reaped { own + n(13)? + n(14)? } else { own })
}

fn parent_of(stat: &str) -> Option<u32> {
    stat.get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// CPU time of the server processes and of the PostgreSQL clusters (postmaster and every
/// backend, including backends that exited during the measurement: their time is in the
/// postmaster's reaped-children counters).
#[derive(Clone, Debug)]
pub struct CpuMeter {
    postmasters: Vec<u32>,
}

/// Ticks consumed up to a point in time.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSnapshot {
    pub server: u64,
    pub postgres: u64,
}

impl CpuMeter {
    /// Meters the clusters whose data directories are `dirs`.
    pub fn new(dirs: &[&std::path::Path]) -> anyhow::Result<Self> {
        let mut postmasters = Vec::new();
        for d in dirs {
            let pid_file = std::fs::read_to_string(d.join("postmaster.pid"))?;
            let pid = pid_file
                .lines()
                .next()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no pid in {}/postmaster.pid", d.display()))?;
            postmasters.push(pid);
        }
        Ok(Self { postmasters })
    }

    /// Ticks so far of `server` and of the clusters.
    #[must_use]
    pub fn snapshot(&self, server: u32) -> CpuSnapshot {
        let mut postgres = 0;
        for pm in &self.postmasters {
            postgres += read_stat(*pm)
                .and_then(|s| process_ticks(&s, true))
                .unwrap_or(0);
        }
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(stat) = read_stat(pid) else { continue };
            if parent_of(&stat).is_some_and(|p| self.postmasters.contains(&p)) {
                postgres += process_ticks(&stat, false).unwrap_or(0);
            }
        }
        CpuSnapshot {
            server: read_stat(server)
                .and_then(|s| process_ticks(&s, false))
                .unwrap_or(0),
            postgres,
        }
    }
}

impl std::ops::Sub for CpuSnapshot {
    type Output = Self;
    fn sub(self, before: Self) -> Self {
        Self {
            server: self.server.saturating_sub(before.server),
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

impl std::ops::AddAssign for CpuSnapshot {
    fn add_assign(&mut self, other: Self) {
        self.server += other.server;
        self.postgres += other.postgres;
    }
}
