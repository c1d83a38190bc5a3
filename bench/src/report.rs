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
    /// The shared tenant on a second platform process with metrics and traces on (`--observed`).
    SharedObserved,
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

/// One open-loop run of a cell (a fixed request rate, below saturation).
#[derive(Clone, Debug)]
pub struct Paced {
    pub workload: Workload,
    pub cell: Cell,
    /// The rate every cell of the workload was paced at (req/s, total).
    pub rate: f64,
    pub outcome: Outcome,
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
    /// Audit seal latencies (ms) sampled during each platform cell's POST runs.
    pub seal: Vec<(Cell, Vec<f64>)>,
    /// What the observed process has on (`both`, `metrics`, `traces`).
    pub observed: String,
    /// The share of new traces the observed process samples.
    pub trace_ratio: f64,
    pub shared_pool: usize,
    pub budget: u32,
}

impl Meta {
    fn cell_label(&self, c: Cell) -> String {
        match c {
            Cell::Baseline => "baseline (bare axum + pool)".into(),
            Cell::SharedTenant => "platform, 1 shared tenant (all connections on it)".into(),
            Cell::SharedObserved => match self.observed.as_str() {
                "metrics" => "platform with metrics, 1 shared tenant".to_owned(),
                "none" => "platform, second process, 1 shared tenant".to_owned(),
                "traces" => format!(
                    "platform with traces ({}% sampled), 1 shared tenant",
                    self.trace_ratio * 100.0
                ),
                _ => format!(
                    "platform with metrics + traces ({}% sampled), 1 shared tenant",
                    self.trace_ratio * 100.0
                ),
            },
            Cell::DedicatedTenant => {
                "platform, 1 dedicated tenant (all connections on it: the promoted tenant)".into()
            }
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
pub fn render(meta: &Meta, all: &[Measured], paced: &[Paced]) -> String {
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
         budget {}) while the cell ran. The headline columns \"server CPU vs bare\" and \
         \"PostgreSQL CPU vs bare\" divide the cell's CPU per request by the baseline's: what a \
         deployment with the database on its own machine pays per request, on each side.\n",
        meta.shared_pool, meta.budget
    );
    let _ = writeln!(
        s,
        "| workload | server | server CPU vs bare | PostgreSQL CPU vs bare | req/s | rounds | vs baseline | p50 | p90 | p99 (saturated) | max | p99 added (saturated) | errors | CPU µs/req: server + PostgreSQL | platform RSS | connections |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut goals = Goals::default();
    let mut fast = FastGoals::default();
    for w in Workload::ALL {
        let base = aggregate(all, w, Cell::Baseline);
        for c in [
            Cell::Baseline,
            Cell::SharedTenant,
            Cell::SharedObserved,
            Cell::DedicatedTenant,
            Cell::ManyTenants,
        ] {
            // The observed cell is compared with the shared one (below), not held to the goals.
            let judged = c != Cell::SharedObserved;
            let Some(a) = aggregate(all, w, c) else {
                continue;
            };
            let o = &a.total;
            let ratio = paired_ratio(all, w, c, Cell::Baseline);
            let ratio_value = ratio;
            let (ratio, added) = match (&base, ratio, c) {
                (Some(_), _, Cell::Baseline) | (None, _, _) => {
                    (String::from("100%"), String::new())
                }
                (Some(b), Some(r), _) => {
                    let d = p(o, 0.99) as f64 / 1000.0 - p(&b.total, 0.99) as f64 / 1000.0;
                    if judged {
                        goals.check(meta, w, c, r, d);
                    }
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
                if judged {
                    goals.connections(meta, &a.connections);
                }
                a.connections
                    .iter()
                    .map(|n| n.data_plane.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let per_req = |ticks: u64| (ticks * TICK_US) as f64 / (o.ok.max(1)) as f64;
            let (server_x, pg_x) = match &base {
                Some(b) if c != Cell::Baseline => {
                    let b_req = |ticks: u64| (ticks * TICK_US) as f64 / (b.total.ok.max(1)) as f64;
                    let sx = per_req(a.cpu.server) / b_req(b.cpu.server).max(f64::MIN_POSITIVE);
                    let px = per_req(a.cpu.postgres) / b_req(b.cpu.postgres).max(f64::MIN_POSITIVE);
                    if judged {
                        fast.cpu(w, c, sx, px);
                    }
                    (format!("{sx:.2}×"), format!("{px:.2}×"))
                }
                _ => ("1×".to_owned(), "1×".to_owned()),
            };
            if c != Cell::Baseline
                && judged
                && let Some(r) = ratio_value
            {
                fast.throughput(w, c, r);
            }
            let cpu = format!(
                "{:.0} + {:.0} = {:.0}",
                per_req(a.cpu.server),
                per_req(a.cpu.postgres),
                per_req(a.cpu.server + a.cpu.postgres)
            );
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {:.0}–{:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.label(),
                meta.cell_label(c),
                server_x,
                pg_x,
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
    render_observed(&mut s, meta, all);
    render_open_loop(&mut s, meta, paced, &mut fast);
    let mut seal_lines = Vec::new();
    for (c, l) in &meta.seal {
        let mut l = l.clone();
        let q = |l: &mut Vec<f64>, q| crate::seal::quantile(l, q).unwrap_or(f64::NAN);
        if let Some(p99) = crate::seal::quantile(&mut l, 0.99) {
            fast.seal.push((*c, p99));
            seal_lines.push(format!(
                "{}: {} events sampled, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                meta.cell_label(*c),
                l.len(),
                q(&mut l, 0.5),
                p99,
                q(&mut l, 1.0)
            ));
        }
    }
    fast.render(&mut s, meta);
    if !seal_lines.is_empty() {
        let _ = writeln!(
            s,
            "\nAudit seal latency (commit → linked by the sealer, sampled every 25 ms during the POST \
             runs; an upper bound, see `bench/src/seal.rs`): {}.",
            seal_lines.join("; ")
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

/// Issue 21's overhead: the shared tenant with metrics and traces on against the same tenant on
/// the other process in the same rounds (`--observed`).
fn render_observed(s: &mut String, meta: &Meta, all: &[Measured]) {
    let mut rows = Vec::new();
    for w in Workload::ALL {
        let in_round = |c: Cell, round: usize| {
            all.iter()
                .find(|m| m.workload == w && m.cell == c && m.round == round)
        };
        let mut ratios: Vec<f64> = all
            .iter()
            .filter(|m| m.workload == w && m.cell == Cell::SharedObserved)
            .filter_map(|m| {
                let off = in_round(Cell::SharedTenant, m.round)?;
                Some(m.outcome.rps() / off.outcome.rps().max(f64::MIN_POSITIVE))
            })
            .collect();
        let (Some(on), Some(off)) = (
            aggregate(all, w, Cell::SharedObserved),
            aggregate(all, w, Cell::SharedTenant),
        ) else {
            continue;
        };
        let per_round = ratios
            .iter()
            .map(|r| format!("{:.3}", r))
            .collect::<Vec<_>>()
            .join(", ");
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = match n {
            0 => continue,
            _ if n % 2 == 1 => ratios[n / 2],
            _ => f64::midpoint(ratios[n / 2 - 1], ratios[n / 2]),
        };
        let mean = ratios.iter().sum::<f64>() / n as f64;
        let per_req =
            |a: &Aggregate, ticks: u64| (ticks * TICK_US) as f64 / a.total.ok.max(1) as f64;
        let cpu = |f: fn(&CpuSnapshot) -> u64| {
            let (x, y) = (per_req(&on, f(&on.cpu)), per_req(&off, f(&off.cpu)));
            format!(
                "{x:.1} / {y:.1} ({:+.1}%)",
                (x / y.max(f64::MIN_POSITIVE) - 1.0) * 100.0
            )
        };
        rows.push(format!(
            "| {} | {per_round} | {:+.1}% | {:+.1}% | {} | {} | {} |",
            w.label(),
            (median - 1.0) * 100.0,
            (mean - 1.0) * 100.0,
            cpu(|c| c.server),
            cpu(|c| c.postgres),
            if median > 0.97 { "met" } else { "**missed**" }
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Observability overhead (issue 21)\n\n{} against the same tenant on the first \
         process, round by round (each round measures both, taking turns going first). \
         Throughput change: the median (and mean) over rounds of on / off req/s. CPU per \
         request: on / off, µs.\n",
        meta.cell_label(Cell::SharedObserved)
    );
    let _ = writeln!(
        s,
        "| workload | on / off req/s, per round | throughput change, median | mean | server CPU µs/req | PostgreSQL CPU µs/req | goal: under 3% |\n|---|---|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let _ = writeln!(s, "{r}");
    }
}

/// The open-loop table: latency added by the platform at a fixed rate below saturation.
fn render_open_loop(s: &mut String, meta: &Meta, paced: &[Paced], fast: &mut FastGoals) {
    if paced.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n### Open loop (latency below saturation)\n\nEvery cell of a workload at the same fixed rate; \
         \"added\" is the cell's percentile minus the baseline's at the same rate. This, not the \
         closed-loop p99 above (a saturation figure), is the latency the platform adds.\n"
    );
    let _ = writeln!(
        s,
        "| workload | server | rate (req/s) | achieved | p50 | p99 | p99.9 | added p50 / p99 / p99.9 | errors |\n|---|---|---:|---:|---:|---:|---:|---|---:|"
    );
    for w in Workload::ALL {
        let base = paced
            .iter()
            .find(|p| p.workload == w && p.cell == Cell::Baseline);
        for r in paced.iter().filter(|p| p.workload == w) {
            let o = &r.outcome;
            let added = match base {
                Some(b) if r.cell != Cell::Baseline => {
                    let d = |q| (p(o, q) as f64 - p(&b.outcome, q) as f64) / 1000.0;
                    fast.open_loop(w, r.cell, d(0.99));
                    format!("{:+.2} / {:+.2} / {:+.2}", d(0.5), d(0.99), d(0.999))
                }
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                w.label(),
                meta.cell_label(r.cell),
                r.rate,
                o.rps(),
                ms(p(o, 0.5)),
                ms(p(o, 0.99)),
                ms(p(o, 0.999)),
                added,
                o.errors
            );
        }
    }
}

/// One goal: measure, values per cell, unit, goal, whether lower is better.
type GoalRow<'a> = (&'a str, &'a [(Cell, f64)], &'a str, f64, bool);

/// Issue 15's goals, each with what this run measured per cell.
#[derive(Default)]
struct FastGoals {
    server_get: Vec<(Cell, f64)>,
    pg_get: Vec<(Cell, f64)>,
    pg_post: Vec<(Cell, f64)>,
    get_one: Vec<(Cell, f64)>,
    get_many: Vec<(Cell, f64)>,
    post_one: Vec<(Cell, f64)>,
    post_many: Vec<(Cell, f64)>,
    open_get: Vec<(Cell, f64)>,
    open_post: Vec<(Cell, f64)>,
    seal: Vec<(Cell, f64)>,
}

impl FastGoals {
    fn cpu(&mut self, w: Workload, c: Cell, server: f64, pg: f64) {
        match w {
            Workload::GetTask => {
                self.server_get.push((c, server));
                self.pg_get.push((c, pg));
            }
            Workload::PostTask => self.pg_post.push((c, pg)),
            Workload::ListTasks => {}
        }
    }

    fn throughput(&mut self, w: Workload, c: Cell, ratio: f64) {
        let many = c == Cell::ManyTenants;
        match (w, many) {
            (Workload::GetTask, false) => self.get_one.push((c, ratio)),
            (Workload::GetTask, true) => self.get_many.push((c, ratio)),
            (Workload::PostTask, false) => self.post_one.push((c, ratio)),
            (Workload::PostTask, true) => self.post_many.push((c, ratio)),
            (Workload::ListTasks, _) => {}
        }
    }

    fn open_loop(&mut self, w: Workload, c: Cell, added_p99_ms: f64) {
        match w {
            Workload::GetTask => self.open_get.push((c, added_p99_ms)),
            Workload::PostTask => self.open_post.push((c, added_p99_ms)),
            Workload::ListTasks => {}
        }
    }

    fn render(&self, s: &mut String, meta: &Meta) {
        let short = |c: Cell| match c {
            Cell::Baseline => "baseline".to_owned(),
            Cell::SharedTenant => "shared".to_owned(),
            Cell::SharedObserved => "shared, observed".to_owned(),
            Cell::DedicatedTenant => "dedicated".to_owned(),
            Cell::ManyTenants => {
                format!("{} tenants", meta.shared_tenants + meta.dedicated_tenants)
            }
        };
        let rows: [GoalRow<'_>; 10] = [
            (
                "server CPU/request, GET one task, vs bare",
                &self.server_get,
                "×",
                1.5,
                true,
            ),
            (
                "PostgreSQL CPU/request, GET one task, vs bare",
                &self.pg_get,
                "×",
                1.15,
                true,
            ),
            (
                "PostgreSQL CPU/request, POST a task (audited), vs bare (unaudited)",
                &self.pg_post,
                "×",
                2.0,
                true,
            ),
            (
                "throughput GET one task, 1 tenant",
                &self.get_one,
                "%",
                75.0,
                false,
            ),
            (
                "throughput GET one task, many tenants",
                &self.get_many,
                "%",
                70.0,
                false,
            ),
            (
                "throughput POST a task, 1 tenant (all connections on it)",
                &self.post_one,
                "%",
                50.0,
                false,
            ),
            (
                "throughput POST a task, many tenants",
                &self.post_many,
                "%",
                50.0,
                false,
            ),
            (
                "open-loop p99 added, GET one task (ms)",
                &self.open_get,
                "ms",
                1.0,
                true,
            ),
            (
                "open-loop p99 added, POST a task (ms)",
                &self.open_post,
                "ms",
                2.0,
                true,
            ),
            (
                "audit seal latency p99 under the POST load (ms)",
                &self.seal,
                "ms absolute",
                1000.0,
                true,
            ),
        ];
        let _ = writeln!(
            s,
            "\n### Goals (issue 15)\n\n| measure | this run | goal | met? |\n|---|---|---:|---|"
        );
        for (name, values, unit, goal, lower) in rows {
            if values.is_empty() {
                let _ = writeln!(s, "| {name} | not measured | {goal} | |");
                continue;
            }
            let shown = |v: f64| match unit {
                "%" => format!("{:.0}%", v * 100.0),
                "×" => format!("{v:.2}×"),
                // A latency of its own, not one added to the baseline's.
                "ms absolute" => format!("{v:.0}"),
                _ => format!("{v:+.2}"),
            };
            let value = |v: f64| if unit == "%" { v * 100.0 } else { v };
            let met = values.iter().all(|&(_, v)| {
                if lower {
                    value(v) <= goal
                } else {
                    value(v) >= goal
                }
            });
            let list = values
                .iter()
                .map(|&(c, v)| format!("{} {}", short(c), shown(v)))
                .collect::<Vec<_>>()
                .join(", ");
            let goal = match unit {
                "%" => format!("≥ {goal:.0}%"),
                "×" => format!("≤ {goal}×"),
                _ => format!("≤ {goal} ms"),
            };
            let _ = writeln!(
                s,
                "| {name} | {list} | {goal} | {} |",
                if met { "yes" } else { "**no**" }
            );
        }
    }
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
