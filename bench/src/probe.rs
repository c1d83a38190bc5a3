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
