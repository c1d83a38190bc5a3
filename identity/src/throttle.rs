//! Failed-attempt throttling of everything a stranger could guess: passwords (per account) and
//! second-factor codes (per user, one budget for every code check: MFA login, TOTP confirm,
//! turning TOTP off), plus one budget per client address across accounts (IPv6 by its /64).
//! After a few failures each further attempt must wait exponentially longer (capped), one at a
//! time. Counters live in memory per instance and are forgotten after a quiet hour.
//!
//! Checking and counting are one step ([`limits::attempts::Backoff`]): an attempt takes its
//! place before it is evaluated, so concurrent attempts cannot all pass before the first failure
//! counts. An [`Attempt`] dropped without an outcome counts as a failure.

use std::net::IpAddr;
use std::time::Duration;

use limits::AddressKey;
use limits::attempts::{Backoff, BackoffAttempt, Outcome, Refused};
use tenancy::ids::{TenantId, UserId};

use crate::AuthError;

/// Failures allowed on an account (or a user's codes) before attempts are slowed down.
pub const ACCOUNT_FREE: u32 = 5;
/// Failures allowed from one address (across accounts) before attempts are slowed down.
pub const ADDRESS_FREE: u32 = 20;
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// What an account budget is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Account {
    /// Password login, by the (normalised) email given, known or not.
    Password(String),
    /// Every second-factor code check of a user.
    Codes(UserId),
}

/// Per-account and per-address failure counters.
#[derive(Clone)]
pub struct Throttle {
    accounts: Backoff<(TenantId, Account)>,
    addresses: Backoff<AddressKey>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Throttle")
    }
}

/// One attempt in progress, holding its places: end it with [`Self::failed`] or
/// [`Self::succeeded`]; dropped, it counts as failed.
pub struct Attempt {
    account: BackoffAttempt<(TenantId, Account)>,
    address: Option<BackoffAttempt<AddressKey>>,
}

impl Attempt {
    /// A wrong password or code: counted for the account and the address.
    pub fn failed(self) {
        self.account.finish(Outcome::Failed);
        if let Some(a) = self.address {
            a.finish(Outcome::Failed);
        }
    }

    /// The right password or code: the account's failures are forgotten (the address's stay:
    /// one good account does not launder a spray over others).
    pub fn succeeded(self) {
        self.account.finish(Outcome::Cleared);
        if let Some(a) = self.address {
            a.finish(Outcome::Passed);
        }
    }

    /// Ended for a reason that says nothing about the guess (the database failed, the state
    /// was wrong): not counted.
    pub fn not_counted(self) {
        self.account.finish(Outcome::Passed);
        if let Some(a) = self.address {
            a.finish(Outcome::Passed);
        }
    }
}

fn throttled(r: Refused) -> AuthError {
    AuthError::Throttled(r.retry_after.as_secs().max(1))
}

impl Throttle {
    #[must_use]
    pub fn new() -> Self {
        Self {
            accounts: Backoff::new(ACCOUNT_FREE, MAX_WAIT, FORGET_AFTER),
            addresses: Backoff::new(ADDRESS_FREE, MAX_WAIT, FORGET_AFTER),
        }
    }

    /// Starts a password attempt on `email` of `tenant` from `ip`, or refuses
    /// ([`AuthError::Throttled`]).
    pub fn password(
        &self,
        tenant: TenantId,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Result<Attempt, AuthError> {
        self.begin((tenant, Account::Password(email.to_owned())), ip)
    }

    /// Starts a second-factor code check for `user` of `tenant` from `ip`, or refuses.
    pub fn code(
        &self,
        tenant: TenantId,
        user: UserId,
        ip: Option<IpAddr>,
    ) -> Result<Attempt, AuthError> {
        self.begin((tenant, Account::Codes(user)), ip)
    }

    fn begin(
        &self,
        account: (TenantId, Account),
        ip: Option<IpAddr>,
    ) -> Result<Attempt, AuthError> {
        let account = self.accounts.begin(account).map_err(throttled)?;
        let address = match ip {
            Some(ip) => match self.addresses.begin(AddressKey::of(ip)) {
                Ok(a) => Some(a),
                Err(r) => {
                    account.finish(Outcome::Passed);
                    return Err(throttled(r));
                }
            },
            None => None,
        };
        Ok(Attempt { account, address })
    }

    /// Forgets quiet counters (memory).
    pub fn purge(&self) {
        self.accounts.purge();
        self.addresses.purge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_the_account_and_the_address() {
        let th = Throttle::new();
        let t = TenantId::new();
        let ip: IpAddr = "2001:db8::7".parse().expect("ip");
        for _ in 0..ACCOUNT_FREE {
            th.password(t, "a@x.test", Some(ip)).expect("free").failed();
        }
        assert!(th.password(t, "a@x.test", None).is_err());
        // Another account is not affected; a code check has its own budget.
        th.password(t, "b@x.test", None).expect("other").succeeded();
        let user = UserId::new();
        th.code(t, user, None).expect("codes").failed();
        // Spraying many accounts from one /64 slows that /64 down.
        let other: IpAddr = "2001:db8::9".parse().expect("ip");
        for i in ACCOUNT_FREE..ADDRESS_FREE {
            th.password(t, &format!("user{i}@x.test"), Some(other))
                .expect("free")
                .failed();
        }
        assert!(th.password(t, "fresh@x.test", Some(ip)).is_err());
        assert!(th.password(t, "fresh@x.test", None).is_ok());
    }

    #[test]
    fn concurrent_attempts_take_their_places_before_any_outcome() {
        let th = Throttle::new();
        let t = TenantId::new();
        let user = UserId::new();
        let held: Vec<Attempt> = (0..ACCOUNT_FREE)
            .map(|_| th.code(t, user, None).expect("free"))
            .collect();
        assert!(th.code(t, user, None).is_err(), "all free places are taken");
        for a in held {
            a.not_counted();
        }
        // A success clears the user's code failures.
        th.code(t, user, None).expect("free").failed();
        th.code(t, user, None).expect("free").succeeded();
        for _ in 0..ACCOUNT_FREE {
            th.code(t, user, None).expect("free").failed();
        }
        assert!(th.code(t, user, None).is_err());
    }
}
