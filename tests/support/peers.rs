//! Real identity providers the SSO tests start, installed by `tests/peers/setup.sh`: an OpenID
//! provider (panva/oidc-provider on Node.js) on a free loopback port, and a SAML IdP (pysaml2,
//! signing with xmlsec1) run once per response. A missing peer fails the test with the command
//! that installs it; nothing is skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

fn peers_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `tests/peers/setup.sh` once per test process (it is idempotent and returns at once when
/// the peers are installed), so `cargo test --workspace` alone sets up a fresh checkout. A failure
/// (no Node.js, no `xmlsec1`, no registry) fails the SSO tests with the script's own message.
pub(crate) fn installed() {
    static SETUP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = SETUP.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(peers_dir().join("setup.sh"))
            .output()
            .map_err(|e| format!("running tests/peers/setup.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tests/peers/setup.sh failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("the SSO test peers could not be installed: {e}");
    }
}

/// A running oidc-provider, stopped on drop.
pub struct OidcPeer {
    pub issuer: String,
    config: Value,
    child: tokio::process::Child,
}

impl OidcPeer {
    /// Starts a provider with `clients` (`client_id`, `client_secret`, `redirect_uris`) and
    /// `accounts` (id → claims) and waits until its discovery document answers.
    pub async fn start(clients: Value, accounts: Value) -> Self {
        installed();
        let port = free_port();
        let config = json!({ "port": port, "clients": clients, "accounts": accounts });
        let child = Self::spawn(&config).await;
        Self {
            issuer: format!("http://127.0.0.1:{port}"),
            config,
            child,
        }
    }

    /// Stops the provider and starts it again on the same address. It signs with a key it
    /// generates at start-up, so this is also a key rotation.
    pub async fn restart(&mut self) {
        self.child.kill().await.expect("stop oidc-provider");
        self.child = Self::spawn(&self.config).await;
    }

    /// How many times the discovery document and the keys were fetched: `(discovery, jwks)`
    /// (the start-up check fetches the discovery document once per start).
    pub async fn fetches(&self) -> (u64, u64) {
        let stats: Value = reqwest::get(format!("{}/__peer/stats", self.issuer))
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        (
            stats["discovery"].as_u64().expect("discovery"),
            stats["jwks"].as_u64().expect("jwks"),
        )
    }

    async fn spawn(config: &Value) -> tokio::process::Child {
        let dir = peers_dir().join("oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the OIDC test peer is not installed: run `bash tests/peers/setup.sh`"
        );
        let child = tokio::process::Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("OIDC_PEER_CONFIG", config.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node (is Node.js installed?)");
        let issuer = format!("http://127.0.0.1:{}", config["port"]);
        let client = reqwest::Client::new();
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        let up = crate::eventually(Duration::from_secs(30), || {
            let (client, discovery) = (client.clone(), discovery.clone());
            async move {
                client
                    .get(&discovery)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(up.is_some(), "oidc-provider did not start on {issuer}");
        child
    }
}

/// A browser without JavaScript: keeps cookies, follows nothing by itself.
pub struct Browser {
    client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    #[must_use]
    pub fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("browser client"),
        }
    }

    /// Walks oidc-provider's pages from `url`: signs in as `login` on its login form, grants
    /// consent on its consent form, until it redirects to a URL starting with `back_to`, which
    /// is returned (the callback with `code` and `state`).
    pub async fn oidc_login(&self, url: &str, login: &str, back_to: &str) -> String {
        let mut next = url.to_owned();
        for _ in 0..20 {
            if next.starts_with(back_to) {
                return next;
            }
            let resp = self
                .client
                .get(&next)
                .send()
                .await
                .expect("GET at the provider");
            let status = resp.status();
            if status.is_redirection() {
                let loc = resp.headers()["location"]
                    .to_str()
                    .expect("location")
                    .to_owned();
                next = resp.url().join(&loc).expect("redirect URL").to_string();
                continue;
            }
            let page_url = resp.url().clone();
            let page = resp.text().await.expect("page");
            assert!(status.is_success(), "provider answered {status}: {page}");
            let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", login), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let resp = self
                .client
                .post(page_url.clone())
                .form(&form)
                .send()
                .await
                .expect("POST at the provider");
            assert!(
                resp.status().is_redirection(),
                "form answered {}",
                resp.status()
            );
            let loc = resp.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            next = page_url.join(&loc).expect("redirect URL").to_string();
        }
        panic!("the provider never redirected back to {back_to}");
    }
}

/// A SAML IdP: pysaml2 with its own RSA key pair.
#[derive(Clone, Debug)]
pub struct SamlIdp {
    pub entity_id: String,
    pub sso_url: String,
    pub key: String,
    pub cert: String,
}

async fn pysaml2(command: &str, request: &Value) -> Value {
    installed();
    let dir = peers_dir().join("saml");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the SAML test peer is not installed: run `bash tests/peers/setup.sh`"
    );
    let mut child = tokio::process::Command::new(python)
        .arg(dir.join("idp.py"))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start pysaml2");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .expect("write request");
    drop(stdin);
    let out = child.wait_with_output().await.expect("pysaml2 ran");
    assert!(
        out.status.success(),
        "pysaml2 {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pysaml2 answered JSON")
}

impl SamlIdp {
    /// A new IdP with a fresh key pair.
    pub async fn new(entity_id: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let keys = pysaml2("keygen", &json!({ "dir": dir, "cn": entity_id })).await;
        Self {
            entity_id: entity_id.to_owned(),
            sso_url: format!("{entity_id}/sso"),
            key: keys["key"].as_str().expect("key").to_owned(),
            cert: keys["cert"].as_str().expect("cert").to_owned(),
        }
    }

    /// The same IdP (entity id, URLs) signing with another key pair: an impostor.
    pub async fn impostor(&self) -> Self {
        let other = Self::new(&self.entity_id).await;
        Self {
            key: other.key,
            cert: other.cert,
            ..self.clone()
        }
    }

    fn base(&self) -> Value {
        json!({ "entity_id": self.entity_id, "sso_url": self.sso_url, "key": self.key, "cert": self.cert })
    }

    /// The IdP's metadata, as pysaml2 publishes it.
    pub async fn metadata(&self) -> String {
        pysaml2("metadata", &self.base()).await["xml"]
            .as_str()
            .expect("xml")
            .to_owned()
    }

    /// A signed Response (base64) to `authn_request` (the `SAMLRequest` of the redirect), or an
    /// unsolicited one when it is `None`; `extra` adds options (see `tests/peers/saml/idp.py`).
    pub async fn respond(
        &self,
        sp_metadata: &str,
        authn_request: Option<&str>,
        user: Value,
        extra: Value,
    ) -> String {
        let mut req = self.base();
        req["sp_metadata"] = sp_metadata.into();
        req["authn_request"] = authn_request.map_or(Value::Null, Into::into);
        req["user"] = user;
        if let Value::Object(m) = extra {
            for (k, v) in m {
                req[k] = v;
            }
        }
        pysaml2("respond", &req).await["saml_response"]
            .as_str()
            .expect("saml_response")
            .to_owned()
    }
}
