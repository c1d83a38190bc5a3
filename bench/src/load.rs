//! The load generator: a fixed number of HTTP/1.1 keep-alive connections (hyper's client
//! connection, no pooling layer, no TLS), each sending one request after another for a fixed
//! duration (closed loop, like `wrk`), recording every successful request's latency in an HDR
//! histogram (microseconds, 3 significant digits). A response with another status than the
//! workload expects, or a transport error, counts as an error and is not in the histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::world::Dataset;

/// What each request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `GET /api/v1/projects/{p}/tasks/{t}` for a random task of the project.
    GetTask,
    /// `GET /api/v1/projects/{p}/tasks?limit=50`.
    ListTasks,
    /// `POST /api/v1/projects/{p}/tasks` with a small JSON body.
    PostTask,
}

impl Workload {
    pub const ALL: [Self; 3] = [Self::GetTask, Self::ListTasks, Self::PostTask];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::GetTask => "GET one task",
            Self::ListTasks => "GET 50 tasks",
            Self::PostTask => "POST a task",
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Self::GetTask | Self::ListTasks => StatusCode::OK,
            Self::PostTask => StatusCode::CREATED,
        }
    }
}

/// Who a request is sent as: a host name, a credential (none for the baseline) and the data the
/// request names.
#[derive(Clone, Debug)]
pub struct Identity {
    pub host: HeaderValue,
    pub authorization: Option<HeaderValue>,
    pub data: Dataset,
}

/// Where to send requests and as whom; each request picks one identity uniformly at random.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub identities: Arc<[Identity]>,
}

/// What one load run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    /// Of the errors: `429 Too Many Requests` answers.
    pub refused: u64,
    pub elapsed: Duration,
}

impl Outcome {
    /// Nothing measured yet (to absorb runs into).
    #[must_use]
    pub fn empty() -> Self {
        Self {
            latency_us: new_histogram(),
            ok: 0,
            errors: 0,
            refused: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Adds another run (histograms merged, counts and durations summed).
    pub fn absorb(&mut self, other: &Self) {
        self.latency_us.add(&other.latency_us).ok();
        self.ok += other.ok;
        self.errors += other.errors;
        self.refused += other.refused;
        self.elapsed += other.elapsed;
    }

    /// Successful requests per second.
    #[must_use]
    pub fn rps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }
}

/// An empty histogram, 1 µs to 60 s, 3 significant digits.
#[must_use]
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

static POST_BODY: &[u8] = br#"{"title":"benchmark task"}"#;

impl Target {
    fn request(&self, workload: Workload, rng: &mut StdRng) -> Request<Full<Bytes>> {
        let who = &self.identities[rng.gen_range(0..self.identities.len())];
        let project = who.data.project;
        let (method, uri, body) = match workload {
            Workload::GetTask => {
                let task = who.data.tasks[rng.gen_range(0..who.data.tasks.len())];
                (
                    Method::GET,
                    format!("/api/v1/projects/{project}/tasks/{task}"),
                    Bytes::new(),
                )
            }
            Workload::ListTasks => (
                Method::GET,
                format!("/api/v1/projects/{project}/tasks?limit=50"),
                Bytes::new(),
            ),
            Workload::PostTask => (
                Method::POST,
                format!("/api/v1/projects/{project}/tasks"),
                Bytes::from_static(POST_BODY),
            ),
        };
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, who.host.clone());
        if let Some(a) = &who.authorization {
            b = b.header(AUTHORIZATION, a.clone());
        }
        if workload == Workload::PostTask {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body))
            .expect("method, path and headers are valid")
    }
}

/// Drives `target` with `connections` connections for `duration`.
pub async fn run(
    target: &Target,
    workload: Workload,
    connections: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let target = target.clone();
            tokio::spawn(connection(target, workload, deadline, i as u64))
        })
        .collect();
    let mut total = Outcome::empty();
    for t in tasks {
        match t.await {
            Ok(o) => total.absorb(&o),
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

async fn connection(target: Target, workload: Workload, deadline: Instant, seed: u64) -> Outcome {
    let mut out = Outcome::empty();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let expected = workload.expected();
    while Instant::now() < deadline {
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    out.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = target.request(workload, &mut rng);
        let t0 = Instant::now();
        match exchange(s, req).await {
            Ok(status) if status == expected => {
                out.ok += 1;
                let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                out.latency_us.saturating_record(us.max(1));
            }
            Ok(StatusCode::TOO_MANY_REQUESTS) => {
                out.errors += 1;
                out.refused += 1;
            }
            Ok(_) => out.errors += 1,
            Err(_) => {
                out.errors += 1;
                sender = None;
            }
        }
    }
    out
}

/// Drives `target` at a fixed total `rate` (requests per second, spread over `connections`
/// connections, each sending on its own schedule: open loop) for `duration`. A connection whose
/// answer comes later than its next slot sends at once and then keeps to the schedule.
pub async fn run_paced(
    target: &Target,
    workload: Workload,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let per_connection = Duration::from_secs_f64(connections as f64 / rate.max(0.001));
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let target = target.clone();
            // Staggered starts, so the connections do not send in lockstep.
            let offset = per_connection.mul_f64(i as f64 / connections as f64);
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                paced_connection(target, workload, deadline, per_connection, i as u64).await
            })
        })
        .collect();
    let mut total = Outcome::empty();
    for t in tasks {
        match t.await {
            Ok(o) => total.absorb(&o),
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = started.elapsed();
    total
}

async fn paced_connection(
    target: Target,
    workload: Workload,
    deadline: Instant,
    every: Duration,
    seed: u64,
) -> Outcome {
    let mut out = Outcome::empty();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5851_f42d_4c95_7f2d);
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let expected = workload.expected();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let s = match &mut sender {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    out.errors += 1;
                    continue;
                }
            },
        };
        let req = target.request(workload, &mut rng);
        let t0 = Instant::now();
        match exchange(s, req).await {
            Ok(status) if status == expected => {
                out.ok += 1;
                let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                out.latency_us.saturating_record(us.max(1));
            }
            Ok(StatusCode::TOO_MANY_REQUESTS) => {
                out.errors += 1;
                out.refused += 1;
            }
            Ok(_) => out.errors += 1,
            Err(_) => {
                out.errors += 1;
                sender = None;
            }
        }
    }
    out
}

/// One request on a kept-alive connection; its status (the body is read and dropped).
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<StatusCode, hyper::Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    resp.into_body().collect().await?;
    Ok(status)
}

/// An HTTP/1.1 connection to `addr` (no Nagle), its driver spawned.
pub async fn connect(addr: SocketAddr) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        conn.await.ok();
    });
    Ok(sender)
}

/// Waits until `addr` answers `GET /healthz` with 200, or `timeout` passes.
pub async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut s) = connect(addr).await {
            let req = Request::get("/healthz")
                .header(HOST, "localhost")
                .body(Full::new(Bytes::new()))
                .expect("static request");
            if matches!(exchange(&mut s, req).await, Ok(StatusCode::OK)) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("the server at {addr} did not become ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
