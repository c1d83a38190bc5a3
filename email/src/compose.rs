//! A rendered message becomes MIME (`multipart/alternative`: text, then HTML), with a stable
//! `Message-ID` (the message id: the job's), `List-Unsubscribe` + `List-Unsubscribe-Post` on
//! unsubscribable mail (RFC 8058), and a DKIM signature (ed25519-sha256, relaxed/relaxed) whose
//! `h=` covers those headers (RFC 8058 §4), so a relay cannot add, drop or change them unseen.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::templates::Rendered;

/// A message ready for any transport: the signed MIME for SMTP and files, its parts and extra
/// headers for an HTTP API that builds the MIME itself.
#[derive(Clone)]
pub struct Outgoing {
    pub id: Uuid,
    /// `"Name" <address>`.
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Headers beyond From/To/Subject (`List-Unsubscribe`, `List-Unsubscribe-Post`).
    pub headers: Vec<(String, String)>,
    /// The signed MIME message.
    pub raw: Vec<u8>,
    pub envelope: lettre::address::Envelope,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The DKIM key a message is signed with.
pub struct Signer {
    pub domain: String,
    pub selector: String,
    pub seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The DNS TXT record that publishes the public key: (name, value).
    #[must_use]
    pub fn txt_record(&self) -> (String, String) {
        let public = ed25519_dalek::SigningKey::from_bytes(&self.seed)
            .verifying_key()
            .to_bytes();
        (
            format!("{}._domainkey.{}", self.selector, self.domain),
            format!("v=DKIM1; k=ed25519; p={}", STANDARD.encode(public)),
        )
    }
}

/// Building the message failed (a bad address in a job: the job fails, never a client).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("`{0}` is not a usable address")]
    Address(String),
    #[error("building the message failed: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("the DKIM key is unusable")]
    Key,
}

/// The headers DKIM covers, where present.
const SIGNED: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Builds and signs the message.
pub fn compose(
    id: Uuid,
    from_name: &str,
    from: &str,
    to: &str,
    rendered: &Rendered,
    unsubscribe_url: Option<&str>,
    signer: &Signer,
) -> Result<Outgoing, ComposeError> {
    let from_mbox = Mailbox::new(
        Some(from_name.to_owned()),
        from.parse()
            .map_err(|_| ComposeError::Address(from.to_owned()))?,
    );
    let to_mbox = Mailbox::new(
        None,
        to.parse()
            .map_err(|_| ComposeError::Address(to.to_owned()))?,
    );
    let mut headers = Vec::new();
    if let Some(url) = unsubscribe_url {
        headers.push(("List-Unsubscribe".to_owned(), format!("<{url}>")));
        headers.push((
            "List-Unsubscribe-Post".to_owned(),
            "List-Unsubscribe=One-Click".to_owned(),
        ));
    }
    let mut b = lettre::Message::builder()
        .from(from_mbox.clone())
        .to(to_mbox)
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<{id}@{}>", signer.domain)))
        .date_now();
    for (name, value) in &headers {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| ComposeError::Address(name.clone()))?;
        b = b.raw_header(HeaderValue::new(name, value.clone()));
    }
    let mut message = b.multipart(MultiPart::alternative_plain_html(
        rendered.text.clone(),
        rendered.html.clone(),
    ))?;
    let present: Vec<HeaderName> = SIGNED
        .iter()
        .filter(|h| message.headers().get_raw(h).is_some())
        .map(|h| HeaderName::new_from_ascii_str(h))
        .collect();
    let key = Zeroizing::new(STANDARD.encode(*signer.seed));
    let key =
        DkimSigningKey::new(&key, DkimSigningAlgorithm::Ed25519).map_err(|_| ComposeError::Key)?;
    message.sign(&DkimConfig::new(
        signer.selector.clone(),
        signer.domain.clone(),
        key,
        present,
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ));
    Ok(Outgoing {
        id,
        from: from_mbox.to_string(),
        to: to.to_owned(),
        subject: rendered.subject.clone(),
        text: rendered.text.clone(),
        html: rendered.html.clone(),
        headers,
        raw: message.formatted(),
        envelope: message.envelope().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_headers_are_signed() {
        let signer = Signer {
            domain: "mail.test".into(),
            selector: "s1".into(),
            seed: Zeroizing::new([3u8; 32]),
        };
        let r = Rendered {
            subject: "Hello".into(),
            html: "<p>hi</p>".into(),
            text: "hi\n".into(),
            locale: "en".into(),
        };
        let m = compose(
            Uuid::now_v7(),
            "Acme",
            "no-reply@mail.test",
            "a@b.test",
            &r,
            Some("https://acme.test/u/tok"),
            &signer,
        )
        .expect("compose");
        let raw = String::from_utf8(m.raw).expect("utf8");
        let sig = raw
            .split("\r\n")
            .skip_while(|l| !l.starts_with("DKIM-Signature:"))
            .take_while(|l| !l.is_empty())
            .collect::<String>();
        assert!(
            sig.contains("list-unsubscribe:list-unsubscribe-post"),
            "{sig}"
        );
        assert!(sig.contains("a=ed25519-sha256"), "{sig}");
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    }
}
