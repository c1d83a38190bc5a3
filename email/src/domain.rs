//! A tenant's own sending domain (tenant V19, `email_domains`): an administrator names it, the
//! platform generates its ed25519 DKIM key (sealed with the tenant's data key, under the
//! registry's `email_domains.key_sealed`, so rotation re-seals it and erasure destroys it) and
//! answers the TXT record to publish. Once the record is found in DNS with this key
//! ([`SendingDomain::published_in`], checked by the route through the platform's resolver), the
//! domain is verified and the tenant's mail goes out `From` it, signed `d=` it. Until then, and
//! for tenants without one, the platform's domain and key sign: an unproven domain is never put
//! in `From` (that would let a tenant send as anyone's domain through us, and its mail would fail
//! DKIM anyway).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use tenancy::crypto::Scope;
use tenancy::crypto::registry::purpose;
use tenancy::dataplane::TenantTx;
use tenancy::ids::DomainName;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::compose::Signer;
use crate::{EmailError, Mailer};

/// A tenant's sending domain as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendingDomain {
    pub domain: String,
    pub selector: String,
    /// base64 of the ed25519 public key.
    pub public_key: String,
    pub verified_at: Option<OffsetDateTime>,
}

impl SendingDomain {
    /// `<selector>._domainkey.<domain>`.
    #[must_use]
    pub fn txt_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// `v=DKIM1; k=ed25519; p=<public key>`.
    #[must_use]
    pub fn txt_value(&self) -> String {
        format!("v=DKIM1; k=ed25519; p={}", self.public_key)
    }

    /// Whether one of `records` (the TXT strings at [`Self::txt_name`]) publishes this key: an
    /// ed25519 DKIM record whose `p=` is ours (tags in any order, whitespace as DNS tools split
    /// it).
    #[must_use]
    pub fn published_in(&self, records: &[String]) -> bool {
        records.iter().any(|r| {
            let tags: Vec<(String, String)> = r
                .split(';')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| {
                    (
                        k.trim().to_ascii_lowercase(),
                        v.chars().filter(|c| !c.is_whitespace()).collect(),
                    )
                })
                .collect();
            let tag = |name: &str| {
                tags.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            tag("v").is_none_or(|v| v == "DKIM1")
                && tag("k") == Some("ed25519")
                && tag("p") == Some(self.public_key.as_str())
        })
    }
}

/// Parses the domain an administrator gives: a host name with a dot (no port, no IP literal),
/// outside the platform's own domain (whose DNS the tenant does not control).
pub fn parse(raw: &str, base_domain: &DomainName) -> Option<DomainName> {
    DomainName::parse_custom(raw.trim(), base_domain).ok()
}

/// The tenant's sending domain, if one is configured.
pub async fn get(tx: &mut TenantTx) -> Result<Option<SendingDomain>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT domain, selector, public_key, verified_at FROM email_domains",
            &[],
        )
        .await?
        .map(|r| SendingDomain {
            domain: r.get(0),
            selector: r.get(1),
            public_key: r.get(2),
            verified_at: r.get(3),
        }))
}

/// Marks `d` verified, if it is still the configured domain with the same key (a replacement
/// that raced the DNS check is not verified by it). `false` if it was replaced meanwhile.
pub async fn mark_verified(
    tx: &mut TenantTx,
    d: &SendingDomain,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .execute(
            "UPDATE email_domains SET verified_at = COALESCE(verified_at, now()), updated_at = now()
             WHERE domain = $1 AND public_key = $2",
            &[&d.domain, &d.public_key],
        )
        .await?
        == 1)
}

/// The selector of a key: the platform's selector and a fingerprint of the key, so each key has
/// its own DNS name (a replaced key's record can stay published while mail in flight verifies).
fn selector(platform: &str, public: &[u8]) -> String {
    let digest = Sha256::digest(public);
    let fp: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("{platform}-{fp}")
}

impl Mailer {
    /// [`parse`] against this platform's base domain.
    #[must_use]
    pub fn parse_sending_domain(&self, raw: &str) -> Option<DomainName> {
        parse(raw, self.inner.resolver.base_domain())
    }

    /// Sets the tenant's sending domain: the same domain again changes nothing (its key and
    /// verification stay); another domain gets a new key and starts unverified.
    pub async fn set_sending_domain(
        &self,
        tx: &mut TenantTx,
        domain: &DomainName,
    ) -> Result<SendingDomain, EmailError> {
        if let Some(current) = get(tx).await?
            && current.domain == domain.as_str()
        {
            return Ok(current);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(&mut *seed);
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let sealed = self
            .inner
            .keyring
            .seal(
                Scope::Tenant(tx.tenant()),
                purpose::EMAIL_DOMAIN_KEY,
                &seed[..],
            )
            .await?;
        let d = SendingDomain {
            domain: domain.as_str().to_owned(),
            selector: selector(&self.inner.settings.dkim_selector, &public),
            public_key: STANDARD.encode(public),
            verified_at: None,
        };
        tx.execute(
            "INSERT INTO email_domains (tenant_id, id, domain, selector, public_key, key_sealed)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id) DO UPDATE SET domain = EXCLUDED.domain,
                 selector = EXCLUDED.selector, public_key = EXCLUDED.public_key,
                 key_sealed = EXCLUDED.key_sealed, verified_at = NULL, updated_at = now()",
            &[
                &tx.tenant().as_uuid(),
                &Uuid::now_v7(),
                &d.domain,
                &d.selector,
                &d.public_key,
                &sealed,
            ],
        )
        .await?;
        Ok(d)
    }

    /// The key and `From` address the tenant's mail is sent with: its verified sending domain's,
    /// or `None` (the platform's).
    pub(crate) async fn tenant_signer(
        &self,
        tx: &mut TenantTx,
    ) -> Result<Option<(Signer, String)>, EmailError> {
        let Some(r) = tx
            .query_opt(
                "SELECT domain, selector, key_sealed FROM email_domains
                 WHERE verified_at IS NOT NULL",
                &[],
            )
            .await?
        else {
            return Ok(None);
        };
        let (domain, selector, sealed): (String, String, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
        let plain = self
            .inner
            .keyring
            .open(
                Scope::Tenant(tx.tenant()),
                purpose::EMAIL_DOMAIN_KEY,
                &sealed,
            )
            .await?;
        let mut seed = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(
                crate::keys::KeysError::Malformed("email_domains.key_sealed".into()).into(),
            );
        }
        seed.copy_from_slice(&plain);
        let local = self
            .inner
            .settings
            .from
            .rsplit_once('@')
            .map_or("no-reply", |(l, _)| l);
        let from = format!("{local}@{domain}");
        Ok(Some((
            Signer {
                domain,
                selector,
                seed,
            },
            from,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> SendingDomain {
        SendingDomain {
            domain: "mail.acme.example".into(),
            selector: "platform-0011223344".into(),
            public_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into(),
            verified_at: None,
        }
    }

    #[test]
    fn the_published_record_must_carry_this_ed25519_key() {
        let d = domain();
        assert!(d.published_in(&[d.txt_value()]));
        // As a DNS tool may split and space it, tags in another order.
        assert!(d.published_in(&[
            "k=ed25519 ; p=11qYAYKxCrfVS/7TyWQHOg7hcv PapiMlrwIaaPcHURo=; v=DKIM1".into()
        ]));
        assert!(!d.published_in(&[]));
        assert!(!d.published_in(&[
            "v=DKIM1; k=rsa; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into()
        ]));
        assert!(!d.published_in(&["v=DKIM1; k=ed25519; p=AAAA".into()]));
        assert!(!d.published_in(&["v=spf1 -all".into()]));
    }

    #[test]
    fn domains_are_host_names_outside_the_platform() {
        let base = DomainName::from_host_header("platform.test").expect("base");
        assert_eq!(
            parse("Mail.Acme.Example", &base).map(|d| d.as_str().to_owned()),
            Some("mail.acme.example".into())
        );
        for bad in [
            "",
            "acme",
            "acme.example:25",
            "a b.example",
            "-x.example",
            "x.platform.test",
            "platform.test",
            "[::1]",
            "ünï.example",
        ] {
            assert!(parse(bad, &base).is_none(), "{bad}");
        }
    }
}
