//! A real Prometheus server (Debian package `prometheus`, installed by `cargo xtask` prereqs)
//! scraping a test instance's metrics listener every second, queried through its HTTP API.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::TestApp;

/// A running Prometheus with one scrape job (`platform`).
pub struct Prometheus {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
    /// The metrics listener task of the instance it scrapes.
    _metrics: tokio::task::JoinHandle<()>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Prometheus {
    /// Serves `app`'s metrics on a loopback listener of their own (as `PLATFORM_METRICS_LISTEN`
    /// does in the server) and starts Prometheus scraping it every second; returns once
    /// Prometheus is ready.
    pub async fn scraping(app: &TestApp) -> Self {
        assert!(
            app.app.metrics.is_on(),
            "spawn the app with PLATFORM_METRICS_LISTEN set"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("metrics listener");
        let target: SocketAddr = listener.local_addr().expect("metrics address");
        let metrics = platform::metrics::serve(listener, app.app.metrics.clone());
        let dir = tempfile::tempdir().expect("prometheus dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: platform\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect(
                "start prometheus (Debian package `prometheus`; `cargo xtask test` installs it)",
            );
        let p = Self {
            _child: child,
            _dir: dir,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _metrics: metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = p.http.get(format!("{}/-/ready", p.base)).send().await
                && r.status().is_success()
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The result vector of an instant PromQL query (empty on any error).
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let Ok(url) = url::Url::parse_with_params(
            &format!("{}/api/v1/query", self.base),
            &[("query", promql)],
        ) else {
            return Vec::new();
        };
        let Ok(r) = self.http.get(url).send().await else {
            return Vec::new();
        };
        let bytes = r.bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        body.pointer("/data/result")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that yields one series (`None` if it yields none or several).
    pub async fn scalar(&self, promql: &str) -> Option<f64> {
        match self.query(promql).await.as_slice() {
            [one] => one
                .pointer("/value/1")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok()),
            _ => None,
        }
    }

    /// Waits (30 s at most) until `promql` yields one series whose value satisfies `check`;
    /// panics with the last answer otherwise.
    pub async fn wait_for(&self, promql: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.scalar(promql).await;
            if let Some(v) = v.filter(|v| check(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "`{promql}` did not reach the expected value within 30 s (last: {v:?}; {:?})",
                self.query(promql).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
