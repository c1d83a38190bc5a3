//! The real SMTP sink the email tests send to: aiosmtpd (PyPI, installed by
//! `tests/peers/setup.sh`) on a free loopback port, saving every message raw and as parsed by
//! Python's email package (a real MIME parser); and dkimpy's verification of a saved message
//! against the record the platform publishes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

fn mail_peer() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/mail")
}

fn python() -> PathBuf {
    crate::peers::installed();
    let p = mail_peer().join(".venv/bin/python");
    assert!(
        p.is_file(),
        "the mail test peers are not installed: run `bash tests/peers/setup.sh`"
    );
    p
}

/// A running aiosmtpd sink, stopped on drop.
pub struct SmtpSink {
    /// `smtp://127.0.0.1:<port>` (for `PLATFORM_SMTP_URL`).
    pub url: String,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

/// A message the sink received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The raw message as it arrived.
    pub eml: PathBuf,
    /// The envelope and the MIME parse (`rcpt_tos`, `subject`, `headers`, `text`, `html`).
    pub parsed: Value,
}

impl Received {
    /// The first header `name` (case-insensitive), decoded.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.parsed["headers"].as_array()?.iter().find_map(|h| {
            (h[0].as_str()?.eq_ignore_ascii_case(name)).then(|| h[1].as_str().map(str::to_owned))?
        })
    }

    /// The envelope recipients.
    #[must_use]
    pub fn to(&self) -> Vec<String> {
        self.parsed["rcpt_tos"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[must_use]
    pub fn subject(&self) -> String {
        self.parsed["subject"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The text/plain part.
    #[must_use]
    pub fn text(&self) -> String {
        self.parsed["text"].as_str().unwrap_or_default().to_owned()
    }

    /// The text/html part.
    #[must_use]
    pub fn html(&self) -> String {
        self.parsed["html"].as_str().unwrap_or_default().to_owned()
    }

    /// The text/html part with the character references a template engine writes for `/` and
    /// `&` decoded (as a browser reads an attribute).
    #[must_use]
    pub fn html_decoded(&self) -> String {
        self.html().replace("&#x2f;", "/").replace("&amp;", "&")
    }

    /// The first `https://` link in the text part that contains `needle`.
    #[must_use]
    pub fn link(&self, needle: &str) -> Option<String> {
        self.text()
            .split_whitespace()
            .find(|w| w.starts_with("https://") && w.contains(needle))
            .map(str::to_owned)
    }
}

impl SmtpSink {
    /// Starts a sink and waits until it accepts connections.
    pub async fn start() -> Self {
        let python = python();
        let dir = tempfile::tempdir().expect("a directory for received mail");
        let mut child = tokio::process::Command::new(python)
            .arg(mail_peer().join("sink.py"))
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().expect("the sink's stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP sink did not start within 30 s")
            .expect("read the sink's stdout")
            .expect("the SMTP sink exited");
        let port = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected sink output: {line}"));
        Self {
            url: format!("smtp://127.0.0.1:{port}"),
            dir,
            _child: child,
        }
    }

    /// Every message received so far, in order.
    #[must_use]
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter_map(|p| {
                let parsed: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                Some(Received {
                    eml: p.with_extension("eml"),
                    parsed,
                })
            })
            .collect()
    }

    /// The messages to `recipient` so far.
    #[must_use]
    pub fn to(&self, recipient: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|m| m.to().iter().any(|t| t == recipient))
            .collect()
    }

    /// Waits (up to 30 s) for the `n`th message to `recipient` and returns it.
    pub async fn wait_for(&self, recipient: &str, n: usize) -> Received {
        let found = crate::eventually(Duration::from_secs(30), || async {
            self.to(recipient).len() >= n
        })
        .await;
        assert!(found.is_some(), "no message {n} to {recipient} within 30 s");
        self.to(recipient).swap_remove(n - 1)
    }
}

/// dkimpy's verdict on the saved message at `eml`, the DNS lookup of `txt_name` answered with
/// `txt_value`: (verified, its report with the signed header names).
pub async fn dkim_verify(eml: &std::path::Path, txt_name: &str, txt_value: &str) -> (bool, String) {
    let out = tokio::process::Command::new(python())
        .arg(mail_peer().join("dkim_check.py"))
        .arg(eml)
        .arg(txt_name)
        .arg(txt_value)
        .output()
        .await
        .expect("run dkimpy");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
