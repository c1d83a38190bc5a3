//! The report: rounds aggregated per (workload, cell) into one markdown table with the ratio to
//! the baseline, then the goals with met/missed, written into `docs/benchmarks.md` between
//! this benchmark's own markers so sections written by other benchmarks survive.

use std::fmt::Write as _;
use std::path::Path;

use crate::load::{Outcome, Workload};
use crate::probe::{Connections, CpuSnapshot, TICK_US};

pub const START: &str = "<!-- load-benchmark:start -->";
pub const END: &str = "<!-- load-benchmark:end -->";

/// Which server, and as which tenants, a measurement drove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Baseline,
    SharedTenant,
    DedicatedTenant,
    ManyTenants,
}

/// One cell of one round.
#[derive(Clone, Debug)]
pub struct Measured {
    pub round: usize,
    pub workload: Workload,
    pub cell: Cell,
    pub outcome: Outcome,
    /// The platform process's VmRSS after the round (KiB).
    pub rss_kib: Option<u64>,
    /// Maximum connections seen per server during the round: `[primary, second]`.
    pub connections: Vec<Connections>,
    /// CPU used during the round by the server process and by both PostgreSQL clusters.
    pub cpu: CpuSnapshot,
}

/// Everything around the numbers.
#[derive(Clone, Debug)]
pub struct Meta {
    pub date: String,
    pub machine: String,
    pub postgres: String,
    pub command: String,
    pub shared_tenants: usize,
    pub dedicated_tenants: usize,
    pub setup: Vec<String>,
    pub peak_rss_kib: Option<u64>,
    pub shared_pool: usize,
    pub budget: u32,
}

impl Meta {
    fn cell_label(&self, c: Cell) -> String {
        match c {
            Cell::Baseline => "baseline (bare axum + pool)".into(),
            Cell::SharedTenant => "platform, 1 shared tenant".into(),
            Cell::DedicatedTenant => "platform, 1 dedicated tenant".into(),
            Cell::ManyTenants => format!(
                "platform, {} tenants ({} shared, {} dedicated)",
                self.shared_tenants + self.dedicated_tenants,
                self.shared_tenants,
                self.dedicated_tenants
            ),
        }
    }
}

struct Aggregate {
    total: Outcome,
    cpu: CpuSnapshot,
    rounds: Vec<f64>,
    rss_kib: Option<u64>,
    connections: Vec<Connections>,
}

fn aggregate(all: &[Measured], workload: Workload, cell: Cell) -> Option<Aggregate> {
    let mut it = all
        .iter()
        .filter(|m| m.workload == workload && m.cell == cell);
    let first = it.next()?;
    let mut agg = Aggregate {
        total: first.outcome.clone(),
        cpu: first.cpu,
        rounds: vec![first.outcome.rps()],
        rss_kib: first.rss_kib,
        connections: first.connections.clone(),
    };
    for m in it {
        agg.total.absorb(&m.outcome);
        agg.cpu += m.cpu;
        agg.rounds.push(m.outcome.rps());
        agg.rss_kib = agg.rss_kib.max(m.rss_kib);
        for (a, b) in agg.connections.iter_mut().zip(&m.connections) {
            a.data_plane = a.data_plane.max(b.data_plane);
            a.all = a.all.max(b.all);
        }
    }
    Some(agg)
}

/// Median over rounds of `cell`'s req/s divided by `reference`'s in the same round: pairing each
/// round with its neighbour in time cancels most of the drift of a machine shared with others.
fn paired_ratio(all: &[Measured], workload: Workload, cell: Cell, reference: Cell) -> Option<f64> {
    let rps = |c: Cell, round: usize| {
        all.iter()
            .find(|m| m.workload == workload && m.cell == c && m.round == round)
            .map(|m| m.outcome.rps())
    };
    let mut ratios: Vec<f64> = all
        .iter()
        .filter(|m| m.workload == workload && m.cell == cell)
        .filter_map(|m| Some(m.outcome.rps() / rps(reference, m.round)?.max(f64::MIN_POSITIVE)))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(ratios[n / 2]),
        _ => Some(f64::midpoint(ratios[n / 2 - 1], ratios[n / 2])),
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn p(o: &Outcome, q: f64) -> u64 {
    o.latency_us.value_at_quantile(q)
}

/// The markdown section (without markers).
#[must_use]
pub fn render(meta: &Meta, all: &[Measured]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Load benchmark: platform vs bare axum + PostgreSQL\n");
    let _ = writeln!(s, "- Date: {}", meta.date);
    let _ = writeln!(s, "- Machine: {}; {}", meta.machine, meta.postgres);
    let _ = writeln!(s, "- Command: `{}`", meta.command);
    for line in &meta.setup {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(
        s,
        "\nreq/s counts successful responses over the whole run of each cell (rounds summed); \
         \"rounds\" shows the slowest and fastest round. \"vs baseline\" is the median over rounds \
         of the cell's req/s divided by the baseline's in the same round (the machine is shared, \
         so neighbouring measurements are compared). Latencies in ms. \"p99 added\" is the \
         cell's p99 minus the baseline's p99 for the same workload. CPU µs/req: CPU time used \
         while the cell ran by the server process and by both PostgreSQL clusters (every backend, \
         background processes included), divided by the requests served; unlike req/s it barely \
         depends on what else the machine was running (10 ms ticks). Connections: the most \
         `platform_app` (data-plane) connections seen in `pg_stat_activity` on the primary server \
         (shared database; budget = shared pool {}) / the second server (dedicated databases; \
         budget {}) while the cell ran.\n",
        meta.shared_pool, meta.budget
    );
    let _ = writeln!(
        s,
        "| workload | server | req/s | rounds | vs baseline | p50 | p90 | p99 | max | p99 added | errors | CPU µs/req: server + PostgreSQL | platform RSS | connections |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut goals = Goals::default();
    for w in Workload::ALL {
        let base = aggregate(all, w, Cell::Baseline);
        for c in [
            Cell::Baseline,
            Cell::SharedTenant,
            Cell::DedicatedTenant,
            Cell::ManyTenants,
        ] {
            let Some(a) = aggregate(all, w, c) else {
                continue;
            };
            let o = &a.total;
            let ratio = paired_ratio(all, w, c, Cell::Baseline);
            let (ratio, added) = match (&base, ratio, c) {
                (Some(_), _, Cell::Baseline) | (None, _, _) => {
                    (String::from("100%"), String::new())
                }
                (Some(b), Some(r), _) => {
                    let d = p(o, 0.99) as f64 / 1000.0 - p(&b.total, 0.99) as f64 / 1000.0;
                    goals.check(meta, w, c, r, d);
                    (format!("{:.0}%", r * 100.0), format!("{d:+.2}"))
                }
                (Some(_), None, _) => (String::from("?"), String::new()),
            };
            if c == Cell::ManyTenants
                && let Some(r) = paired_ratio(all, w, c, Cell::SharedTenant)
            {
                goals.many(w, r);
            }
            let lo = a.rounds.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = a.rounds.iter().copied().fold(0.0, f64::max);
            let rss = match (c, a.rss_kib) {
                (Cell::Baseline, _) | (_, None) => String::new(),
                (_, Some(k)) => format!("{:.0} MiB", k as f64 / 1024.0),
            };
            let conns = if c == Cell::Baseline {
                String::new()
            } else {
                goals.connections(meta, &a.connections);
                a.connections
                    .iter()
                    .map(|n| n.data_plane.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let per_req = |ticks: u64| (ticks * TICK_US) as f64 / (o.ok.max(1)) as f64;
            let cpu = format!(
                "{:.0} + {:.0} = {:.0}",
                per_req(a.cpu.server),
                per_req(a.cpu.postgres),
                per_req(a.cpu.server + a.cpu.postgres)
            );
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0}–{:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.label(),
                meta.cell_label(c),
                o.rps(),
                lo,
                hi,
                ratio,
                ms(p(o, 0.5)),
                ms(p(o, 0.9)),
                ms(p(o, 0.99)),
                ms(o.latency_us.max()),
                added,
                o.errors,
                cpu,
                rss,
                conns
            );
        }
    }
    if let Some(k) = meta.peak_rss_kib {
        let _ = writeln!(
            s,
            "\nPlatform peak resident memory over the whole run (VmHWM): {:.0} MiB.",
            k as f64 / 1024.0
        );
    }
    let _ = writeln!(s, "\n### Goals (issue 9)\n");
    let _ = writeln!(s, "| goal | result |\n|---|---|");
    for (goal, misses) in goals.rows(meta) {
        let result = if misses.is_empty() {
            "met".to_owned()
        } else {
            format!("**missed**: {}", misses.join("; "))
        };
        let _ = writeln!(s, "| {goal} | {result} |");
    }
    s
}

#[derive(Default)]
struct Goals {
    throughput: Vec<String>,
    p99: Vec<String>,
    many: Vec<String>,
    connections: Vec<String>,
    max_primary: i64,
    max_second: i64,
}

impl Goals {
    fn check(&mut self, meta: &Meta, w: Workload, c: Cell, ratio: f64, added_ms: f64) {
        if ratio < 0.85 {
            self.throughput.push(format!(
                "{} / {}: {:.0}%",
                w.label(),
                meta.cell_label(c),
                ratio * 100.0
            ));
        }
        if added_ms > 1.0 {
            self.p99.push(format!(
                "{} / {}: {added_ms:+.2} ms",
                w.label(),
                meta.cell_label(c)
            ));
        }
    }

    fn many(&mut self, w: Workload, ratio: f64) {
        if !(0.9..=1.1).contains(&ratio) {
            self.many.push(format!(
                "{}: {:.0}% of the single shared tenant",
                w.label(),
                ratio * 100.0
            ));
        }
    }

    fn connections(&mut self, meta: &Meta, seen: &[Connections]) {
        let primary = seen.first().map_or(0, |c| c.data_plane);
        let second = seen.get(1).map_or(0, |c| c.data_plane);
        self.max_primary = self.max_primary.max(primary);
        self.max_second = self.max_second.max(second);
        let shared_budget = i64::try_from(meta.shared_pool).unwrap_or(i64::MAX);
        if primary > shared_budget && !self.connections.iter().any(|m| m.starts_with("primary")) {
            self.connections.push(format!(
                "primary: {primary} data-plane connections > shared pool {shared_budget}"
            ));
        }
        if second > i64::from(meta.budget)
            && !self.connections.iter().any(|m| m.starts_with("second"))
        {
            self.connections.push(format!(
                "second: {second} data-plane connections > budget {}",
                meta.budget
            ));
        }
    }

    fn rows(self, meta: &Meta) -> Vec<(String, Vec<String>)> {
        vec![
            (
                "platform throughput ≥ 85% of the baseline, every workload and cell".into(),
                self.throughput,
            ),
            ("p99 added by the platform ≤ 1 ms".into(), self.p99),
            (
                format!(
                    "{} tenants: throughput within 10% of the single (shared) tenant",
                    meta.shared_tenants + meta.dedicated_tenants
                ),
                self.many,
            ),
            (
                format!(
                    "connections per server within budget (most seen: primary {} of {}, second {} of {})",
                    self.max_primary, meta.shared_pool, self.max_second, meta.budget
                ),
                self.connections,
            ),
        ]
    }
}

/// Replaces this benchmark's section of `path` (between its markers), or appends it; every other
/// part of the file is kept as it is.
pub fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    write_marked(path, START, END, section)
}

/// Replaces the block between `start` and `end` in `path` (appends it if absent).
pub fn write_marked(path: &Path, start: &str, end: &str, section: &str) -> std::io::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(e),
    };
    let block = format!("{start}\n{}\n{end}", section.trim_end());
    let new = match (old.find(start), old.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &old[..a], &old[b + end.len()..])
        }
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    };
    std::fs::write(path, new)
}
