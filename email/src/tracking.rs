//! Open tracking, off by default: a tenant administrator enables it (`email_settings`, tenant
//! V19); the HTML part of that tenant's messages then ends with a 1×1 image at
//! `/o/{token}`, and the first fetch of it records an `opened` event for the message. The token
//! is `base64url(tenant ‖ message ‖ HMAC-SHA256/128)` under the platform's unsubscribe key (with
//! its own domain-separation label), so it names one message of one tenant and cannot be forged
//! or pointed at another. Mail without HTML images shown, or fetched through a proxy that caches,
//! is not counted: opens are a lower bound.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenancy::dataplane::TenantTx;
use tenancy::ids::TenantId;
use uuid::Uuid;

use crate::{EmailError, Mailer, store};

const MAC_LEN: usize = 16;

/// A transparent 1×1 GIF (43 bytes).
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn mac(key: &[u8; 32], body: &[u8]) -> [u8; MAC_LEN] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"platform-open-v1\0");
    m.update(body);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// The token of message `message` of `tenant`.
#[must_use]
pub fn sign(key: &[u8; 32], tenant: TenantId, message: Uuid) -> String {
    let mut body = Vec::with_capacity(32 + MAC_LEN);
    body.extend_from_slice(tenant.as_uuid().as_bytes());
    body.extend_from_slice(message.as_bytes());
    let tag = mac(key, &body);
    body.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(body)
}

/// The (tenant, message) `token` names, if it is genuine.
#[must_use]
pub fn verify(key: &[u8; 32], token: &str) -> Option<(TenantId, Uuid)> {
    if token.len() > 128 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() != 32 + MAC_LEN {
        return None;
    }
    let (body, tag) = raw.split_at(32);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac(key, body)[..], tag)) {
        return None;
    }
    Some((
        TenantId::from_uuid(Uuid::from_slice(&body[..16]).ok()?),
        Uuid::from_slice(&body[16..]).ok()?,
    ))
}

/// `html` with the tracking image at `url` before `</body>` (or at the end).
#[must_use]
pub fn with_pixel(html: &str, url: &str) -> String {
    let img = format!(
        "<img src=\"{url}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">"
    );
    match html.rfind("</body>") {
        Some(i) => format!("{}{img}\n{}", &html[..i], &html[i..]),
        None => format!("{html}{img}"),
    }
}

/// Whether the tenant enabled open tracking.
pub async fn enabled(tx: &mut TenantTx) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .query_opt("SELECT open_tracking FROM email_settings", &[])
        .await?
        .is_some_and(|r| r.get(0)))
}

/// Enables or disables open tracking for the tenant.
pub async fn set_enabled(tx: &mut TenantTx, on: bool) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO email_settings (tenant_id, open_tracking) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET open_tracking = EXCLUDED.open_tracking,
             updated_at = now()",
        &[&tx.tenant().as_uuid(), &on],
    )
    .await?;
    Ok(())
}

impl Mailer {
    /// The open-tracking token of `message` of `tenant`.
    pub(crate) async fn open_token(
        &self,
        tenant: TenantId,
        message: Uuid,
    ) -> Result<String, crate::keys::KeysError> {
        Ok(sign(self.unsubscribe_key().await?, tenant, message))
    }

    /// Records the first open of the message `token` names (later fetches change nothing).
    /// `false` if the token is not genuine, or names no tenant or no message of it.
    pub async fn opened(&self, token: &str) -> Result<bool, EmailError> {
        let key = self.unsubscribe_key().await?;
        let Some((tenant, message)) = verify(key, token) else {
            return Ok(false);
        };
        let Some(mut tx) = self.begin(tenant).await? else {
            return Ok(false);
        };
        let Some(recipient) = tx
            .query_opt(
                "SELECT recipient FROM email_messages WHERE id = $1",
                &[&message],
            )
            .await?
            .map(|r| r.get::<_, String>(0))
        else {
            return Ok(false);
        };
        store::event(
            &mut tx,
            Some(message),
            &recipient,
            "opened",
            Some(&format!("open:{message}")),
            serde_json::json!({ "source": "pixel" }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_message_and_cannot_be_altered() {
        let key = [9u8; 32];
        let (t, m) = (TenantId::from_uuid(Uuid::now_v7()), Uuid::now_v7());
        let token = sign(&key, t, m);
        assert_eq!(verify(&key, &token), Some((t, m)));
        assert_eq!(verify(&[1u8; 32], &token), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("b64");
        raw[20] ^= 1;
        assert_eq!(verify(&key, &URL_SAFE_NO_PAD.encode(raw)), None);
        assert_eq!(verify(&key, "x"), None);
    }

    #[test]
    fn the_pixel_goes_before_the_end_of_the_body() {
        let html = with_pixel("<html><body><p>hi</p></body></html>", "https://a.test/o/t");
        assert!(
            html.ends_with("<img src=\"https://a.test/o/t\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">\n</body></html>"),
            "{html}"
        );
        assert_eq!(PIXEL_GIF.len(), 43);
    }
}
