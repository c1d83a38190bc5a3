//! Typed configuration, read once from `PLATFORM_*` environment variables and validated; a bad
//! value fails at startup with the variable's name. Shared by the server and `platformctl`, which
//! are configured by the same variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::MasterKey;
use crate::ids::DomainName;

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error(
        "PLATFORM_DATABASE_URL and PLATFORM_SHARED_DATABASE_URL must be set together \
         (or neither, to use the embedded PostgreSQL)"
    )]
    HalfExternal,
}

/// Where the databases are.
#[derive(Clone, Debug)]
pub enum DatabaseMode {
    /// Start (or reuse) a local cluster under the data dir.
    Embedded,
    /// Use these servers; start nothing. URLs connect as the owner of the schemas.
    External {
        control_plane_url: Secret,
        shared_url: Secret,
    },
}

/// A string that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(s: String) -> Self {
        Self(s)
    }
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Everything the platform and `platformctl` read from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub database: DatabaseMode,
    pub base_domain: DomainName,
    /// The current key-encryption key.
    pub master_key: Option<MasterKey>,
    /// Previous KEKs still needed to unwrap data keys during a rotation.
    pub previous_master_keys: Vec<MasterKey>,
    pub shared_pool_size: usize,
    pub dedicated_pool_size: usize,
    pub server_connection_budget: usize,
    pub default_db_server: String,
    pub log_json: bool,
    /// The data plane reaches PostgreSQL through a transaction-mode pooler (PgBouncer and the
    /// like): connections must not keep a tenant's setting between transactions.
    pub transaction_pooler: bool,
    /// Rate limits and trusted proxies (`PLATFORM_RATE_LIMIT_*`, `PLATFORM_TRUSTED_PROXIES`).
    pub limits: LimitSettings,
    /// URLs that tenants configure (SSO issuers, metadata) may point at loopback and private
    /// addresses (`PLATFORM_SSO_ALLOW_PRIVATE_NETWORKS`; development and tests only: otherwise any
    /// tenant administrator could make the server fetch internal services).
    pub allow_private_egress: bool,
    /// The feature-flag environment this instance evaluates in (`PLATFORM_ENVIRONMENT`, default
    /// `production`).
    pub environment: String,
    /// Limits on every data-plane session (`PLATFORM_STATEMENT_TIMEOUT`, default 30 s, and
    /// `PLATFORM_IDLE_IN_TRANSACTION_TIMEOUT`, default 60 s; 0 turns one off).
    pub session_limits: crate::dataplane::SessionLimits,
    /// Prometheus metrics (`PLATFORM_METRICS_LISTEN`, `PLATFORM_METRICS_TOP_TENANTS`).
    pub metrics: MetricsSettings,
    /// Transactional email (`PLATFORM_SMTP_*`, `PLATFORM_EMAIL_*`, `PLATFORM_DKIM_SELECTOR`).
    pub email: EmailSettings,
    /// Stripe (`PLATFORM_STRIPE_*`): billing is off unless the secret key is set.
    pub stripe: StripeSettings,
}

/// How mail leaves: the provider's HTTP API (failing over to SMTP), SMTP alone, or, with neither
/// set, `.eml` files under `<data dir>/mail/`.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// `PLATFORM_SMTP_URL` (`smtp://host:port`, STARTTLS when offered or `?tls=required`;
    /// `smtps://host:port`, implicit TLS; user and password may be in the URL).
    pub smtp_url: Option<Secret>,
    /// `PLATFORM_SMTP_PASSWORD`: the SMTP password when it is not in the URL.
    pub smtp_password: Option<Secret>,
    /// `PLATFORM_EMAIL_FROM`: the sender address (default `no-reply@<base domain>`); its domain
    /// is the DKIM signing domain.
    pub from: String,
    /// `PLATFORM_EMAIL_PROVIDER_URL`: the provider's API base (Postmark-shaped, e.g.
    /// `https://api.postmarkapp.com`).
    pub provider_url: Option<String>,
    /// `PLATFORM_EMAIL_PROVIDER_TOKEN`: the provider's server token.
    pub provider_token: Option<Secret>,
    /// `PLATFORM_EMAIL_PROVIDER_TIMEOUT`: seconds one provider call may take (default 10).
    pub provider_timeout: Duration,
    /// `PLATFORM_DKIM_SELECTOR` (default `platform`): the DNS selector of the signing key.
    pub dkim_selector: String,
    /// `PLATFORM_EMAIL_WEBHOOK_CREDENTIALS` (`user:password`): the HTTP Basic credentials the
    /// provider's webhooks must present; unset, every webhook call is refused.
    pub webhook_credentials: Option<Secret>,
    /// `<data dir>/mail`: where messages go with no transport configured.
    pub file_dir: PathBuf,
}

/// How the platform reaches Stripe and checks its webhooks.
#[derive(Clone, Debug, Default)]
pub struct StripeSettings {
    /// The API secret key (`PLATFORM_STRIPE_SECRET_KEY`); `None`: billing through Stripe is off
    /// (operator grants still work).
    pub secret_key: Option<Secret>,
    /// Webhook signing secrets (`PLATFORM_STRIPE_WEBHOOK_SECRET`, comma-separated: during a
    /// secret roll both the old and the new one are accepted).
    pub webhook_secrets: Vec<Secret>,
    /// The API's base URL (`PLATFORM_STRIPE_API_BASE`, default `https://api.stripe.com/`); tests
    /// point it at their stand-in.
    pub api_base: Option<String>,
}

/// Where the metrics are served and how many tenants get a series of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The metrics listener (`PLATFORM_METRICS_LISTEN`, e.g. `127.0.0.1:9464`); `None` (unset)
    /// turns metrics off: nothing is recorded. Never the tenant listener.
    pub listen: Option<SocketAddr>,
    /// The busiest tenants that get their own per-tenant series (`PLATFORM_METRICS_TOP_TENANTS`,
    /// default 20, 1 to 1000); every other tenant is counted under `other`.
    pub top_tenants: usize,
    /// A series not updated for this long is dropped from the exposition
    /// (`PLATFORM_METRICS_IDLE_SECS`, default 600, 1 to 86,400): tenants that left the top N,
    /// routes no longer called.
    pub idle: std::time::Duration,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get`, so tests can supply their own environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let invalid = |var: &'static str, problem: String| SettingsError::Invalid { var, problem };

        let data_dir =
            PathBuf::from(get("PLATFORM_DATA_DIR").unwrap_or_else(|| "./.platform".into()));
        let listen = get("PLATFORM_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|e| invalid("PLATFORM_LISTEN", format!("not a socket address ({e})")))?;
        let admin_token = get("PLATFORM_ADMIN_TOKEN").map(Secret);
        if let Some(t) = &admin_token
            && t.0.len() < 24
        {
            return Err(invalid(
                "PLATFORM_ADMIN_TOKEN",
                "must be at least 24 characters".into(),
            ));
        }
        let database = match (
            get("PLATFORM_DATABASE_URL"),
            get("PLATFORM_SHARED_DATABASE_URL"),
        ) {
            (None, None) => DatabaseMode::Embedded,
            (Some(cp), Some(shared)) => {
                for (var, url) in [
                    ("PLATFORM_DATABASE_URL", &cp),
                    ("PLATFORM_SHARED_DATABASE_URL", &shared),
                ] {
                    url.parse::<tokio_postgres::Config>()
                        .map_err(|_| invalid(var, "not a PostgreSQL connection URL".into()))?;
                }
                DatabaseMode::External {
                    control_plane_url: Secret(cp),
                    shared_url: Secret(shared),
                }
            }
            _ => return Err(SettingsError::HalfExternal),
        };
        let base_domain = DomainName::from_host_header(
            &get("PLATFORM_BASE_DOMAIN").unwrap_or_else(|| "localhost".into()),
        )
        .ok_or_else(|| invalid("PLATFORM_BASE_DOMAIN", "not a host name".into()))?;
        // The key file holds one base64 key per line: the current one first, then previous ones.
        let (master_key, mut previous_master_keys) =
            match (get("PLATFORM_MASTER_KEY"), get("PLATFORM_MASTER_KEY_FILE")) {
                (Some(k), _) => (
                    Some(
                        MasterKey::from_base64(&k)
                            .map_err(|e| invalid("PLATFORM_MASTER_KEY", e.to_string()))?,
                    ),
                    Vec::new(),
                ),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        invalid(
                            "PLATFORM_MASTER_KEY_FILE",
                            format!("cannot read {path}: {e}"),
                        )
                    })?;
                    let mut keys = Vec::new();
                    for line in text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    {
                        keys.push(
                            MasterKey::from_base64(line)
                                .map_err(|e| invalid("PLATFORM_MASTER_KEY_FILE", e.to_string()))?,
                        );
                    }
                    if keys.is_empty() {
                        return Err(invalid(
                            "PLATFORM_MASTER_KEY_FILE",
                            format!("{path} holds no key"),
                        ));
                    }
                    let current = keys.remove(0);
                    (Some(current), keys)
                }
                (None, None) => (None, Vec::new()),
            };
        if let Some(list) = get("PLATFORM_MASTER_KEY_PREVIOUS") {
            for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                previous_master_keys.push(
                    MasterKey::from_base64(k)
                        .map_err(|e| invalid("PLATFORM_MASTER_KEY_PREVIOUS", e.to_string()))?,
                );
            }
        }
        if master_key.is_none() && matches!(database, DatabaseMode::External { .. }) {
            return Err(invalid(
                "PLATFORM_MASTER_KEY",
                "required with external databases (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)".into(),
            ));
        }
        let number =
            |var: &'static str, default: usize, max: usize| -> Result<usize, SettingsError> {
                match get(var) {
                    None => Ok(default),
                    Some(v) => match v.parse::<usize>() {
                        Ok(n) if (1..=max).contains(&n) => Ok(n),
                        _ => Err(invalid(
                            var,
                            format!("must be a whole number from 1 to {max}"),
                        )),
                    },
                }
            };
        let log_json = match get("PLATFORM_LOG_FORMAT").as_deref() {
            None | Some("json") => true,
            Some("pretty") => false,
            Some(_) => {
                return Err(invalid(
                    "PLATFORM_LOG_FORMAT",
                    "must be `json` or `pretty`".into(),
                ));
            }
        };
        let flag = |var: &'static str| match get(var).as_deref() {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(invalid(var, "must be `true` or `false`".into())),
        };
        let transaction_pooler = flag("PLATFORM_TRANSACTION_POOLER")?;
        let allow_private_egress = flag("PLATFORM_SSO_ALLOW_PRIVATE_NETWORKS")?;
        let environment = get("PLATFORM_ENVIRONMENT").unwrap_or_else(|| "production".into());
        if !(1..=32).contains(&environment.len())
            || !environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "PLATFORM_ENVIRONMENT",
                "must be 1 to 32 characters of a-z, 0-9, `-` and `_`".into(),
            ));
        }
        let seconds =
            |var: &'static str, default: u64| -> Result<Option<Duration>, SettingsError> {
                let n = match get(var) {
                    None => default,
                    Some(v) => v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n <= 86_400)
                        .ok_or_else(|| {
                            invalid(var, "must be whole seconds from 0 (off) to 86400".into())
                        })?,
                };
                Ok((n > 0).then(|| Duration::from_secs(n)))
            };
        let session_limits = crate::dataplane::SessionLimits {
            statement_timeout: seconds("PLATFORM_STATEMENT_TIMEOUT", 30)?,
            idle_in_transaction_timeout: seconds("PLATFORM_IDLE_IN_TRANSACTION_TIMEOUT", 60)?,
        };
        let defaults = LimitSettings::default();
        let rate = |var: &'static str,
                    default: crate::catalog::RateQuota|
         -> Result<crate::catalog::RateQuota, SettingsError> {
            let Some(v) = get(var) else {
                return Ok(default);
            };
            let parsed = v.split_once('/').and_then(|(r, b)| {
                Some((r.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
            });
            match parsed {
                Some((per_second, burst))
                    if (1..=1_000_000).contains(&per_second)
                        && (1..=1_000_000).contains(&burst) =>
                {
                    Ok(crate::catalog::RateQuota { per_second, burst })
                }
                _ => Err(invalid(
                    var,
                    "must be `<requests per second>/<burst>`, e.g. `100/200` (1 to 1000000 each)"
                        .into(),
                )),
            }
        };
        let failures =
            |var: &'static str, default: FailureQuota| -> Result<FailureQuota, SettingsError> {
                let Some(v) = get(var) else {
                    return Ok(default);
                };
                FailureQuota::parse(&v).ok_or_else(|| {
                    invalid(
                        var,
                        "must be `<failures>/<seconds>s`, e.g. `20/60s` (1 to 1000000 failures, \
                     1 to 86400 seconds)"
                            .into(),
                    )
                })
            };
        let mut trusted_proxies = Vec::new();
        if let Some(list) = get("PLATFORM_TRUSTED_PROXIES") {
            for c in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                let net = c
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "PLATFORM_TRUSTED_PROXIES",
                            format!("`{c}` is not an address or CIDR block"),
                        )
                    })?;
                trusted_proxies.push(net);
            }
        }
        let limits = LimitSettings {
            tenant_default: rate(
                "PLATFORM_RATE_LIMIT_TENANT_DEFAULT",
                defaults.tenant_default,
            )?,
            principal: rate("PLATFORM_RATE_LIMIT_PRINCIPAL", defaults.principal)?,
            sensitive_ip: rate("PLATFORM_RATE_LIMIT_SENSITIVE_IP", defaults.sensitive_ip)?,
            admin_ip: rate("PLATFORM_RATE_LIMIT_ADMIN_IP", defaults.admin_ip)?,
            auth_failures_address: failures(
                "PLATFORM_AUTH_FAILURES_PER_ADDRESS",
                defaults.auth_failures_address,
            )?,
            auth_failures_tenant: failures(
                "PLATFORM_AUTH_FAILURES_PER_TENANT",
                defaults.auth_failures_tenant,
            )?,
            trusted_proxies,
        };
        let default_from = format!("no-reply@{base_domain}");
        let stripe = StripeSettings {
            secret_key: get("PLATFORM_STRIPE_SECRET_KEY").map(Secret),
            webhook_secrets: get("PLATFORM_STRIPE_WEBHOOK_SECRET")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Secret(s.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            api_base: get("PLATFORM_STRIPE_API_BASE")
                .map(|v| {
                    if v.starts_with("http://") || v.starts_with("https://") {
                        Ok(v)
                    } else {
                        Err(invalid(
                            "PLATFORM_STRIPE_API_BASE",
                            "must be an http(s) URL".into(),
                        ))
                    }
                })
                .transpose()?,
        };
        if stripe.webhook_secrets.len() > 2 {
            return Err(invalid(
                "PLATFORM_STRIPE_WEBHOOK_SECRET",
                "at most two secrets (the old and the new one during a roll)".into(),
            ));
        }
        Ok(Self {
            stripe,
            limits,
            listen,
            admin_token,
            database,
            base_domain,
            master_key,
            previous_master_keys,
            shared_pool_size: number("PLATFORM_SHARED_POOL_SIZE", 16, 1000)?,
            dedicated_pool_size: number("PLATFORM_DEDICATED_POOL_SIZE", 4, 100)?,
            server_connection_budget: number("PLATFORM_SERVER_CONNECTION_BUDGET", 40, 10_000)?,
            default_db_server: get("PLATFORM_DEFAULT_DB_SERVER").unwrap_or_else(|| "local".into()),
            log_json,
            transaction_pooler,
            allow_private_egress,
            environment,
            session_limits,
            metrics: MetricsSettings {
                listen: get("PLATFORM_METRICS_LISTEN")
                    .map(|v| v.parse())
                    .transpose()
                    .map_err(|e| {
                        invalid(
                            "PLATFORM_METRICS_LISTEN",
                            format!("not a socket address ({e})"),
                        )
                    })?,
                top_tenants: number("PLATFORM_METRICS_TOP_TENANTS", 20, 1000)?,
                idle: std::time::Duration::from_secs(number(
                    "PLATFORM_METRICS_IDLE_SECS",
                    600,
                    86_400,
                )? as u64),
            },
            email: EmailSettings {
                smtp_url: match get("PLATFORM_SMTP_URL") {
                    None => None,
                    Some(u) => {
                        let scheme = u.split_once("://").map(|(s, _)| s);
                        if !matches!(scheme, Some("smtp" | "smtps")) {
                            return Err(invalid(
                                "PLATFORM_SMTP_URL",
                                "must be `smtp://host:port` or `smtps://host:port`".into(),
                            ));
                        }
                        Some(Secret(u))
                    }
                },
                smtp_password: get("PLATFORM_SMTP_PASSWORD").map(Secret),
                from: match get("PLATFORM_EMAIL_FROM") {
                    Some(f) if f.contains('@') && !f.contains(char::is_whitespace) => f,
                    Some(_) => {
                        return Err(invalid(
                            "PLATFORM_EMAIL_FROM",
                            "must be an address, e.g. `no-reply@example.com`".into(),
                        ));
                    }
                    None => default_from,
                },
                provider_url: match (
                    get("PLATFORM_EMAIL_PROVIDER_URL"),
                    get("PLATFORM_EMAIL_PROVIDER_TOKEN"),
                ) {
                    (Some(u), Some(_)) if u.starts_with("https://") || u.starts_with("http://") => {
                        Some(u.trim_end_matches('/').to_owned())
                    }
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            "PLATFORM_EMAIL_PROVIDER_URL",
                            "must be an http(s) URL".into(),
                        ));
                    }
                    (None, None) => None,
                    _ => {
                        return Err(invalid(
                            "PLATFORM_EMAIL_PROVIDER_URL",
                            "must be set together with PLATFORM_EMAIL_PROVIDER_TOKEN".into(),
                        ));
                    }
                },
                provider_token: get("PLATFORM_EMAIL_PROVIDER_TOKEN").map(Secret),
                provider_timeout: seconds("PLATFORM_EMAIL_PROVIDER_TIMEOUT", 10)?
                    .unwrap_or(Duration::from_secs(10)),
                dkim_selector: match get("PLATFORM_DKIM_SELECTOR") {
                    None => "platform".into(),
                    Some(s)
                        if (1..=63).contains(&s.len())
                            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                    {
                        s
                    }
                    Some(_) => {
                        return Err(invalid(
                            "PLATFORM_DKIM_SELECTOR",
                            "must be 1 to 63 letters, digits and `-`".into(),
                        ));
                    }
                },
                webhook_credentials: match get("PLATFORM_EMAIL_WEBHOOK_CREDENTIALS") {
                    None => None,
                    Some(c)
                        if c.split_once(':')
                            .is_some_and(|(u, p)| !u.is_empty() && p.len() >= 16) =>
                    {
                        Some(Secret(c))
                    }
                    Some(_) => {
                        return Err(invalid(
                            "PLATFORM_EMAIL_WEBHOOK_CREDENTIALS",
                            "must be `user:password` with a password of at least 16 characters"
                                .into(),
                        ));
                    }
                },
                file_dir: data_dir.join("mail"),
            },
            data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_are_embedded_on_localhost() {
        let s = Settings::from_lookup(env(&[])).expect("defaults are valid");
        assert!(matches!(s.database, DatabaseMode::Embedded));
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.base_domain.as_str(), "localhost");
    }

    #[test]
    fn stripe_settings_take_two_webhook_secrets_during_a_roll() {
        let s = Settings::from_lookup(env(&[
            ("PLATFORM_STRIPE_SECRET_KEY", "sk_test_1"),
            ("PLATFORM_STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new"),
            ("PLATFORM_STRIPE_API_BASE", "http://127.0.0.1:1234/"),
        ]))
        .expect("valid");
        let secrets: Vec<&str> = s
            .stripe
            .webhook_secrets
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(secrets, ["whsec_old", "whsec_new"]);
        assert_eq!(s.stripe.api_base.as_deref(), Some("http://127.0.0.1:1234/"));
        assert!(
            format!("{:?}", s.stripe).contains("Secret(..)"),
            "secrets redacted"
        );
        let e = Settings::from_lookup(env(&[("PLATFORM_STRIPE_WEBHOOK_SECRET", "a,b,c")]))
            .expect_err("three secrets");
        assert!(
            e.to_string().starts_with("PLATFORM_STRIPE_WEBHOOK_SECRET"),
            "{e}"
        );
        let e = Settings::from_lookup(env(&[("PLATFORM_STRIPE_API_BASE", "api.stripe.com")]))
            .expect_err("not a URL");
        assert!(e.to_string().starts_with("PLATFORM_STRIPE_API_BASE"), "{e}");
        assert!(
            Settings::from_lookup(env(&[]))
                .expect("defaults")
                .stripe
                .secret_key
                .is_none()
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = Settings::from_lookup(env(&[("PLATFORM_LISTEN", "nope")])).expect_err("invalid");
        assert!(e.to_string().starts_with("PLATFORM_LISTEN"), "{e}");
        let e = Settings::from_lookup(env(&[("PLATFORM_DATABASE_URL", "postgres://x/y")]))
            .expect_err("half");
        assert!(matches!(e, SettingsError::HalfExternal));
        let e =
            Settings::from_lookup(env(&[("PLATFORM_MASTER_KEY", "short")])).expect_err("bad key");
        assert!(e.to_string().starts_with("PLATFORM_MASTER_KEY"), "{e}");
        let e = Settings::from_lookup(env(&[
            ("PLATFORM_DATABASE_URL", "postgres://x/y"),
            ("PLATFORM_SHARED_DATABASE_URL", "postgres://x/z"),
        ]))
        .expect_err("key needed");
        assert!(e.to_string().starts_with("PLATFORM_MASTER_KEY"), "{e}");
    }

    #[test]
    fn email_settings_default_to_files_and_bad_values_name_their_variable() {
        let s = Settings::from_lookup(env(&[])).expect("defaults");
        assert_eq!(s.email.from, "no-reply@localhost");
        assert!(s.email.smtp_url.is_none() && s.email.provider_url.is_none());
        assert_eq!(s.email.file_dir, PathBuf::from("./.platform").join("mail"));
        assert_eq!(s.email.dkim_selector, "platform");
        for (var, bad) in [
            ("PLATFORM_SMTP_URL", "http://mail.test"),
            ("PLATFORM_EMAIL_FROM", "not an address"),
            ("PLATFORM_EMAIL_PROVIDER_URL", "https://api.test"),
            ("PLATFORM_DKIM_SELECTOR", "bad selector"),
            ("PLATFORM_EMAIL_WEBHOOK_CREDENTIALS", "user:short"),
        ] {
            let e = Settings::from_lookup(env(&[(var, bad)])).expect_err(var);
            assert!(e.to_string().starts_with(var), "{e}");
        }
    }

    #[test]
    fn auth_failure_budgets_are_configurable() {
        let s = Settings::from_lookup(env(&[
            ("PLATFORM_AUTH_FAILURES_PER_ADDRESS", "5/10s"),
            ("PLATFORM_AUTH_FAILURES_PER_TENANT", "1000/1s"),
        ]))
        .expect("valid");
        assert_eq!(s.limits.auth_failures_address.failures, 5);
        assert_eq!(
            s.limits.auth_failures_address.interval(),
            Duration::from_secs(2)
        );
        assert_eq!(
            s.limits.auth_failures_tenant.interval(),
            Duration::from_millis(1)
        );
        for bad in ["20", "0/60s", "20/60", "20/0s", "x/1s", "20/90000s"] {
            let e = Settings::from_lookup(env(&[("PLATFORM_AUTH_FAILURES_PER_ADDRESS", bad)]))
                .expect_err(bad);
            assert!(
                e.to_string()
                    .starts_with("PLATFORM_AUTH_FAILURES_PER_ADDRESS"),
                "{e}"
            );
        }
    }
}

/// What the limits are, from configuration.
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// Tenants whose plan is not in the catalog.
    pub tenant_default: crate::catalog::RateQuota,
    /// Each user or API key, within its tenant.
    pub principal: crate::catalog::RateQuota,
    /// Each client address on login, sign-up, password reset, MFA verify and SSO ACS.
    pub sensitive_ip: crate::catalog::RateQuota,
    /// Each client address on the admin API.
    pub admin_ip: crate::catalog::RateQuota,
    /// Failed authentications per client address (IPv6 by /64), before any database work.
    pub auth_failures_address: FailureQuota,
    /// Failed authentications claiming one tenant, all addresses together: what a distributed
    /// flood of made-up credentials may cost that tenant's database.
    pub auth_failures_tenant: FailureQuota,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            tenant_default: crate::catalog::RateQuota {
                per_second: 100,
                burst: 200,
            },
            principal: crate::catalog::RateQuota {
                per_second: 100,
                burst: 200,
            },
            sensitive_ip: crate::catalog::RateQuota {
                per_second: 5,
                burst: 20,
            },
            admin_ip: crate::catalog::RateQuota {
                per_second: 50,
                burst: 100,
            },
            // 20 at once, then 20 a minute.
            auth_failures_address: FailureQuota {
                failures: 20,
                per: Duration::from_secs(60),
            },
            // 200 at once, then 20 a second.
            auth_failures_tenant: FailureQuota {
                failures: 200,
                per: Duration::from_secs(10),
            },
            trusted_proxies: Vec::new(),
        }
    }
}

/// A failure budget: `failures` at once, refilled evenly over `per` (`PLATFORM_AUTH_FAILURES_*`,
/// written `<failures>/<seconds>s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureQuota {
    pub failures: u32,
    pub per: Duration,
}

impl FailureQuota {
    /// `20/60s` → 20 failures, refilled over 60 s.
    #[must_use]
    pub fn parse(v: &str) -> Option<Self> {
        let (n, per) = v.split_once('/')?;
        let failures = n.trim().parse::<u32>().ok()?;
        let secs = per.trim().strip_suffix('s')?.parse::<u64>().ok()?;
        ((1..=1_000_000).contains(&failures) && (1..=86_400).contains(&secs)).then(|| Self {
            failures,
            per: Duration::from_secs(secs),
        })
    }

    /// The time one failure takes to come back.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.per / self.failures
    }
}
