//! The real `platform` binary as a second server process over a test instance's databases (for
//! what must hold across processes: notifications, not shared memory). The binary is the one
//! `cargo xtask test` / `cargo xtask ci` build before the tests (`target/debug/platform`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::{ADMIN_TOKEN, TestApp};

/// A running `platform` process.
pub struct Platform {
    child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    /// Its standard output, line by line (the log, with `PLATFORM_LOG_FORMAT=json` a JSON line
    /// per event).
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// `target/debug/platform`, beside the test binary's `deps/` directory.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug");
    let bin = dir.join("platform");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p platform`; `cargo xtask test` does)",
        bin.display()
    );
    bin
}

impl Platform {
    /// Starts the binary on a free loopback port, over `app`'s databases, and waits until it
    /// answers `/readyz`.
    pub async fn start(app: &TestApp) -> Self {
        Self::start_with(app, &[]).await
    }

    /// [`Self::start`] with more environment variables; its standard output is kept
    /// ([`Self::stdout`]).
    pub async fn start_with(app: &TestApp, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let data = tempfile::tempdir().expect("data dir");
        let mut cmd = tokio::process::Command::new(binary());
        cmd.envs(app.platform_env())
            .env("PLATFORM_DATA_DIR", data.path())
            .env("PLATFORM_LISTEN", format!("127.0.0.1:{port}"))
            .env("PLATFORM_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start platform");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let lines = std::sync::Arc::clone(&stdout);
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt as _;
                let mut r = tokio::io::BufReader::new(out).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    if let Ok(mut v) = lines.lock() {
                        v.push(l);
                    }
                }
            });
        }
        // The data directory is unused with external databases; keep it for the process's life.
        std::mem::forget(data);
        let p = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = p.http.get(format!("{}/readyz", p.base)).send().await
                && r.status().is_success()
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "the platform process did not become ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An operator `POST` with a JSON body; the JSON answer (any status).
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request to the platform process");
        let text = r.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// The process's standard output so far.
    #[must_use]
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// A request to the process (any method, headers and body are the caller's).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        self.child.kill().await.ok();
    }
}
