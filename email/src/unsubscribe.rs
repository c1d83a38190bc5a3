//! One-click unsubscribe tokens (RFC 8058): `base64url(tenant ‖ category ‖ recipient ‖ mac)`,
//! the MAC an HMAC-SHA256 (first 16 bytes) under the platform's unsubscribe key. The token is the
//! whole authority of `POST /u/{token}` (no cookie, no session), scoped to one tenant, one
//! recipient and one category; it cannot be forged or widened without the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenancy::ids::TenantId;
use uuid::Uuid;

use crate::kinds::Category;

const MAC_LEN: usize = 16;

/// What an unsubscribe token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub tenant: TenantId,
    pub category: Category,
    /// Lower-cased.
    pub recipient: String,
}

fn category_byte(c: Category) -> u8 {
    match c {
        Category::Security => 0,
        Category::Account => 1,
        Category::Invitations => 2,
        Category::Marketing => 3,
    }
}

fn category_of(b: u8) -> Option<Category> {
    Some(match b {
        0 => Category::Security,
        1 => Category::Account,
        2 => Category::Invitations,
        3 => Category::Marketing,
        _ => return None,
    })
}

fn mac(key: &[u8; 32], body: &[u8]) -> [u8; MAC_LEN] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"platform-unsubscribe-v1\0");
    m.update(body);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// The token for `u`.
#[must_use]
pub fn sign(key: &[u8; 32], u: &Unsubscribe) -> String {
    let mut body = Vec::with_capacity(17 + u.recipient.len() + MAC_LEN);
    body.extend_from_slice(u.tenant.as_uuid().as_bytes());
    body.push(category_byte(u.category));
    body.extend_from_slice(u.recipient.to_lowercase().as_bytes());
    let tag = mac(key, &body);
    body.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(body)
}

/// What `token` grants, if it is genuine.
#[must_use]
pub fn verify(key: &[u8; 32], token: &str) -> Option<Unsubscribe> {
    if token.len() > 1024 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() < 17 + MAC_LEN + 3 {
        return None;
    }
    let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
    let expected = mac(key, body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], tag)) {
        return None;
    }
    let tenant = TenantId::from_uuid(Uuid::from_slice(&body[..16]).ok()?);
    let category = category_of(body[16])?;
    let recipient = String::from_utf8(body[17..].to_vec()).ok()?;
    Some(Unsubscribe {
        tenant,
        category,
        recipient,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_unaltered_and_under_their_key() {
        let key = [7u8; 32];
        let u = Unsubscribe {
            tenant: TenantId::from_uuid(Uuid::now_v7()),
            category: Category::Marketing,
            recipient: "a@b.test".into(),
        };
        let t = sign(&key, &u);
        assert_eq!(verify(&key, &t), Some(u.clone()));
        assert_eq!(verify(&[8u8; 32], &t), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&t).expect("b64");
        raw[16] = 0; // widen to security mail
        assert_eq!(verify(&key, &URL_SAFE_NO_PAD.encode(raw)), None);
        assert_eq!(verify(&key, "nope"), None);
    }
}
