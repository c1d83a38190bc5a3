//! The DNS side of domain verification: a trait for TXT lookups, so the check can be driven by a
//! test resolver, and the production implementation over `hickory-resolver` with the system's
//! resolver configuration. A fresh resolver per check: checks are rare and an admin who just
//! published the record must not wait out a cached negative answer.

use std::future::Future;
use std::pin::Pin;

/// A TXT lookup failed for a reason other than "no such record" (which is an empty answer).
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {0}")]
pub struct DnsError(pub String);

/// Looks up the TXT records of a name.
pub trait TxtResolver: Send + Sync + std::fmt::Debug {
    /// The strings of every TXT record at `name` (each record's character-strings joined, as
    /// RFC 7208 reads them); empty when the name or the record does not exist.
    fn txt<'a>(
        &'a self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, DnsError>> + Send + 'a>>;
}

/// The system's resolver (`/etc/resolv.conf`) through hickory.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl TxtResolver for SystemResolver {
    fn txt<'a>(
        &'a self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, DnsError>> + Send + 'a>> {
        Box::pin(async move {
            let resolver = hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| DnsError(e.to_string()))?
                .build()
                .map_err(|e| DnsError(e.to_string()))?;
            // Fully qualified: never completed with the host's search domains.
            let lookup = match resolver.txt_lookup(format!("{name}.")).await {
                Ok(l) => l,
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
                Err(e) => return Err(DnsError(e.to_string())),
            };
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }
}
