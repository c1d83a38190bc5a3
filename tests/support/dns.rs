//! A test resolver for the verified-domain check: TXT records the test publishes, served through
//! the platform's own [`TxtResolver`] trait (the production one asks the system's DNS, which a
//! test cannot publish to). Shared by every instance of a [`crate::TestApp`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sso::domains::dns::{DnsError, TxtResolver};

/// TXT records by name; `fail` makes every lookup fail (a resolver outage).
#[derive(Debug, Default)]
pub struct TestDns {
    records: Mutex<HashMap<String, Vec<String>>>,
    fail: Mutex<bool>,
}

impl TestDns {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Publishes a TXT record `value` at `name` (beside any already there).
    pub fn publish(&self, name: &str, value: &str) {
        self.records
            .lock()
            .expect("dns records")
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
    }

    /// Every lookup fails from now on (or works again).
    pub fn set_failing(&self, fail: bool) {
        *self.fail.lock().expect("dns fail") = fail;
    }
}

impl TxtResolver for TestDns {
    fn txt<'a>(
        &'a self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, DnsError>> + Send + 'a>> {
        let fail = *self.fail.lock().expect("dns fail");
        let found = self
            .records
            .lock()
            .expect("dns records")
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        Box::pin(async move {
            if fail {
                Err(DnsError("SERVFAIL (test resolver)".into()))
            } else {
                Ok(found)
            }
        })
    }
}
