//! The assertion consumer service: checking a posted `SAMLResponse` in the order the
//! [`saml`](super) module docs give (size and encoding, precheck, matching request or IdP-initiated
//! connection, destination, signature and conditions via samael, the precheck's assertion,
//! audience, expiry), then reading the identity out of the verified assertion.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::ReduceMode;
use samael::schema::Assertion;
use samael::service_provider::Error as SpError;
use tenancy::catalog::Tenant;
use time::OffsetDateTime;

use super::{CLOCK_SKEW_SECS, Verified, precheck};
use crate::connections::{self, Protocol};
use crate::provision::Asserted;
use crate::requests::{self, Lookup};
use crate::{Rejection, Sso, SsoError};

/// Largest accepted SAMLResponse (base64).
const MAX_RESPONSE: usize = 256 * 1024;

fn map_sp_error(e: &SpError) -> Rejection {
    match e {
        SpError::FailedToValidateSignature => Rejection::Signature,
        SpError::ResponseInResponseToInvalid { .. }
        | SpError::AssertionInResponseToInvalid { .. } => Rejection::UnknownRequest,
        SpError::ResponseExpired { .. }
        | SpError::AssertionExpired { .. }
        | SpError::AssertionConditionExpired { .. }
        | SpError::AssertionSubjectConfirmationExpired { .. } => Rejection::Expired,
        SpError::AssertionConditionExpiredBefore { .. }
        | SpError::AssertionSubjectConfirmationExpiredBefore { .. } => Rejection::NotYetValid,
        SpError::ResponseIssuerMismatch { .. } | SpError::AssertionIssuerMismatch { .. } => {
            Rejection::WrongIssuer
        }
        SpError::AssertionConditionAudienceRestrictionFailed { .. } => Rejection::WrongAudience,
        SpError::AssertionRecipientMismatch { .. } => Rejection::WrongRecipient,
        SpError::DestinationValidationError { .. } => Rejection::WrongDestination,
        SpError::ResponseBadStatusCode { .. } => Rejection::IdpStatus,
        _ => Rejection::Malformed,
    }
}

fn chrono_to_time(t: chrono::DateTime<chrono::Utc>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Sso {
    /// Verifies a `SAMLResponse` posted to the tenant's ACS.
    pub async fn saml_acs(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        saml_response: &str,
    ) -> Result<Verified, SsoError> {
        if saml_response.len() > MAX_RESPONSE {
            return Err(SsoError::rejected(
                Rejection::Malformed,
                "SAMLResponse too large",
            ));
        }
        let compact: String = saml_response
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let xml = STANDARD
            .decode(compact)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                SsoError::rejected(Rejection::Malformed, "SAMLResponse is not base64 UTF-8")
            })?;
        let hints = precheck::check(&xml)?;

        let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
        let (conn, request) = match &hints.in_response_to {
            Some(irt) => match requests::lookup(&mut tx, irt).await? {
                Lookup::Open(c, _) => (
                    connections::get(&mut tx, c)
                        .await?
                        .ok_or(SsoError::NoSuchConnection("the SSO connection was deleted"))?,
                    Some(irt.clone()),
                ),
                Lookup::Used => {
                    return Err(SsoError::rejected(
                        Rejection::Replay,
                        "the request was already answered",
                    ));
                }
                Lookup::Unknown => {
                    return Err(SsoError::rejected(
                        Rejection::UnknownRequest,
                        "InResponseTo names no open request of this tenant",
                    ));
                }
            },
            None => {
                let issuer = hints.issuer.as_deref().unwrap_or_default();
                match connections::by_idp_entity_id(&mut tx, issuer).await? {
                    Some(c) if c.allow_idp_initiated => (c, None),
                    _ => {
                        return Err(SsoError::rejected(
                            Rejection::Unsolicited,
                            "unsolicited response and no connection of this issuer allows IdP-initiated login",
                        ));
                    }
                }
            }
        };
        tx.commit().await?;
        if !conn.enabled {
            return Err(SsoError::rejected(
                Rejection::Disabled,
                "connection disabled",
            ));
        }
        let Protocol::Saml(idp) = &conn.protocol else {
            return Err(SsoError::rejected(
                Rejection::UnknownRequest,
                "not a SAML connection",
            ));
        };
        let sp_names = self.saml_sp(tenant);
        if hints
            .destination
            .as_deref()
            .is_some_and(|d| d != sp_names.acs_url)
        {
            return Err(SsoError::rejected(
                Rejection::WrongDestination,
                "Destination is not this tenant's ACS",
            ));
        }
        let sp = self.service_provider(tenant, idp, request.is_none())?;
        let ids: Vec<String> = request.iter().cloned().collect();
        let assertion: Assertion = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let possible = if refs.is_empty() {
                None
            } else {
                Some(&refs[..])
            };
            sp.parse_xml_response_with_mode(&xml, possible, ReduceMode::ValidateAndMarkNoAncestors)
                .map_err(|e| {
                    let reason = map_sp_error(&e);
                    SsoError::rejected(reason, e.to_string())
                })
        })
        .await
        .map_err(|e| SsoError::Internal(e.to_string()))??;

        // The verified assertion must be the one element the precheck saw.
        if assertion.id != hints.assertion_id {
            return Err(SsoError::rejected(
                Rejection::Structure,
                "the signed assertion is not the response's assertion",
            ));
        }
        let conditions = assertion.conditions.as_ref();
        let audience_ok = conditions
            .and_then(|c| c.audience_restrictions.as_ref())
            .is_some_and(|r| {
                r.iter()
                    .any(|a| a.audience.iter().any(|x| x == &sp_names.entity_id))
            });
        if !audience_ok {
            return Err(SsoError::rejected(
                Rejection::WrongAudience,
                "no AudienceRestriction naming this SP",
            ));
        }
        let subject = assertion.subject.as_ref();
        let scd_expiry = subject
            .and_then(|s| s.subject_confirmations.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.subject_confirmation_data.as_ref()?.not_on_or_after)
            .max();
        let expiry = conditions
            .and_then(|c| c.not_on_or_after)
            .into_iter()
            .chain(scd_expiry)
            .max()
            .map(|t| chrono_to_time(t) + time::Duration::seconds(CLOCK_SKEW_SECS))
            .ok_or_else(|| {
                SsoError::rejected(Rejection::Malformed, "the assertion has no NotOnOrAfter")
            })?;
        let name_id = subject.and_then(|s| s.name_id.as_ref()).ok_or_else(|| {
            SsoError::rejected(Rejection::Malformed, "the assertion has no NameID")
        })?;
        let identity = identity_of(&assertion, &name_id.value, name_id.format.as_deref());
        Ok(Verified {
            connection: conn,
            identity,
            request,
            assertion: Some((assertion.id.clone(), expiry)),
        })
    }
}

/// Attribute names that carry an email address, by common IdP conventions.
const EMAIL_ATTRIBUTES: &[&str] = &[
    "email",
    "mail",
    "emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
];
const NAME_ATTRIBUTES: &[&str] = &[
    "name",
    "displayname",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
];

fn identity_of(a: &Assertion, name_id: &str, format: Option<&str>) -> Asserted {
    let mut attributes = std::collections::BTreeMap::<String, Vec<String>>::new();
    for statement in a.attribute_statements.iter().flatten() {
        for attr in &statement.attributes {
            let values: Vec<String> = attr.values.iter().filter_map(|v| v.value.clone()).collect();
            for key in [attr.name.as_ref(), attr.friendly_name.as_ref()]
                .into_iter()
                .flatten()
            {
                attributes
                    .entry(key.clone())
                    .or_default()
                    .extend(values.iter().cloned());
            }
        }
    }
    let find = |names: &[&str]| {
        attributes
            .iter()
            .find(|(k, v)| names.contains(&k.to_lowercase().as_str()) && !v.is_empty())
            .map(|(_, v)| v[0].clone())
    };
    let email = find(EMAIL_ATTRIBUTES).or_else(|| {
        let is_email_format =
            format == Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress");
        (is_email_format || name_id.contains('@')).then(|| name_id.to_owned())
    });
    Asserted {
        subject: name_id.to_owned(),
        email,
        // The tenant's own IdP, configured by its admin, vouches for its users' addresses.
        email_verified: true,
        name: find(NAME_ATTRIBUTES),
        attributes,
    }
}
