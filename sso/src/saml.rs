//! SAML 2.0 service provider, one per tenant: SP metadata, SP-initiated login (HTTP-Redirect
//! AuthnRequest whose ID is remembered, single use) and the assertion consumer service.
//!
//! A response is accepted only if, in this order: it is structurally sound ([`precheck`]: one
//! assertion, no comments, enveloped signatures referencing their parent); its `InResponseTo`
//! names an open request of this tenant (or, without one, the issuer's connection allows
//! IdP-initiated login); the signature verifies with xmlsec against the connection's
//! certificates using an allow-listed algorithm, and everything not covered by it is removed
//! before parsing (samael's `ValidateAndMarkNoAncestors`); the verified assertion is the one the
//! precheck saw; issuer, audience (required), recipient, destination, `InResponseTo` and the
//! time window hold (samael, 60 s skew); and, at sign-in, the request and the assertion id are
//! consumed in the same transaction that signs the user in (replay cache in the database).

pub(crate) mod precheck;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode};
use samael::key_info::{KeyInfo, X509Data};
use samael::metadata::{EntityDescriptor, KeyDescriptor};
use samael::schema::Assertion;
use samael::service_provider::{Error as SpError, ServiceProvider};
use tenancy::catalog::Tenant;
use time::OffsetDateTime;

use crate::connections::{self, Connection, ConnectionId, Protocol, SamlIdp};
use crate::provision::Asserted;
use crate::requests::{self, Lookup};
use crate::{Rejection, Sso, SsoError};

/// Signature algorithms accepted (SHA-1 and DSA are not).
const ALLOWED: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];
/// Tolerated clock difference with the IdP.
const CLOCK_SKEW_SECS: i64 = 60;
/// How old an assertion's IssueInstant may be.
const MAX_ISSUE_DELAY_SECS: i64 = 180;
/// Largest accepted SAMLResponse (base64).
const MAX_RESPONSE: usize = 256 * 1024;

/// Names a tenant's service provider goes by.
#[derive(Clone, Debug)]
pub struct Sp {
    pub entity_id: String,
    pub acs_url: String,
}

/// A verified answer of an identity provider, ready to sign someone in.
#[derive(Debug)]
pub struct Verified {
    pub connection: Connection,
    pub identity: Asserted,
    /// The request the answer consumes (SAML AuthnRequest ID).
    pub request: Option<String>,
    /// The assertion id and until when it must not be seen again.
    pub assertion: Option<(String, OffsetDateTime)>,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

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
    /// The tenant's SP entity id and ACS URL.
    #[must_use]
    pub fn saml_sp(&self, tenant: &Tenant) -> Sp {
        let origin = self.tenant_origin(tenant);
        Sp {
            entity_id: format!("{origin}/sso/saml/metadata"),
            acs_url: format!("{origin}/sso/saml/acs"),
        }
    }

    /// The tenant's SP metadata document.
    #[must_use]
    pub fn saml_metadata(&self, tenant: &Tenant) -> String {
        let sp = self.saml_sp(tenant);
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{}">
  <md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
            xml_escape(&sp.entity_id),
            xml_escape(&sp.acs_url)
        )
    }

    fn service_provider(
        &self,
        tenant: &Tenant,
        idp: &SamlIdp,
        idp_initiated: bool,
    ) -> Result<ServiceProvider, SsoError> {
        let sp = self.saml_sp(tenant);
        let mut ed: EntityDescriptor = idp
            .metadata_xml
            .parse()
            .map_err(|_| SsoError::Internal("stored IdP metadata does not parse".into()))?;
        // Verify with exactly the connection's certificates (metadata ones plus rotation extras).
        let keys = vec![KeyDescriptor {
            key_use: Some("signing".into()),
            key_info: KeyInfo {
                id: None,
                x509_data: Some(X509Data {
                    certificates: idp.certificates.clone(),
                }),
            },
            encryption_methods: None,
        }];
        for d in ed.idp_sso_descriptors.iter_mut().flatten() {
            d.key_descriptors.clone_from(&keys);
        }
        ed.entity_id = Some(idp.entity_id.clone());
        Ok(ServiceProvider {
            entity_id: Some(sp.entity_id),
            acs_url: Some(sp.acs_url),
            metadata_url: None,
            slo_url: None,
            idp_metadata: ed,
            allow_idp_initiated: idp_initiated,
            max_clock_skew: chrono::Duration::seconds(CLOCK_SKEW_SECS),
            max_issue_delay: chrono::Duration::seconds(MAX_ISSUE_DELAY_SECS),
            allowed_signature_algorithms: Some(ALLOWED.to_vec()),
            ..ServiceProvider::default()
        })
    }

    /// Starts an SP-initiated login: the IdP URL carrying the AuthnRequest (its ID remembered).
    pub async fn saml_login(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        id: ConnectionId,
        relay_state: &str,
    ) -> Result<String, SsoError> {
        let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
        let conn = connections::get(&mut tx, id)
            .await?
            .ok_or(SsoError::NoSuchConnection("no such SSO connection"))?;
        let Protocol::Saml(idp) = &conn.protocol else {
            return Err(SsoError::NoSuchConnection("no such SAML connection"));
        };
        if !conn.enabled {
            return Err(SsoError::rejected(
                Rejection::Disabled,
                "connection disabled",
            ));
        }
        let sp = self.service_provider(tenant, idp, false)?;
        let mut req = sp
            .make_authentication_request(&idp.sso_url)
            .map_err(|e| SsoError::Internal(format!("AuthnRequest: {e}")))?;
        req.id = format!("_{}", tenancy::crypto::random_token(32));
        let url = req
            .redirect(relay_state)
            .map_err(|e| SsoError::Internal(format!("AuthnRequest: {e}")))?
            .ok_or_else(|| SsoError::Internal("AuthnRequest without destination".into()))?;
        requests::remember(&mut tx, id, &req.id, None).await?;
        tx.commit().await?;
        Ok(url.to_string())
    }

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

impl Sso {
    /// Signs the verified identity in: consumes the request and the assertion id (replay), finds
    /// links or creates the user, records the login. All in one transaction.
    pub async fn sign_in(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        v: &Verified,
    ) -> Result<tenancy::ids::UserId, SsoError> {
        let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
        if let Some(r) = &v.request
            && !requests::consume(&mut tx, r).await?
        {
            return Err(SsoError::rejected(
                Rejection::Replay,
                "the request was already answered",
            ));
        }
        if let Some((id, until)) = &v.assertion
            && !requests::first_sighting(&mut tx, v.connection.id, id, *until).await?
        {
            return Err(SsoError::rejected(
                Rejection::Replay,
                "this assertion was already used",
            ));
        }
        let (user, how) = crate::provision::user_for(&mut tx, &v.connection, &v.identity).await?;
        identity::users::security_event(
            &mut tx,
            "sso.login",
            Some(user),
            None,
            serde_json::json!({"connection_id": v.connection.id.to_string(), "account": how}),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }
}
