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
mod request;
mod response;

use samael::crypto::AllowedSignatureAlgorithm;
use samael::key_info::{KeyInfo, X509Data};
use samael::metadata::{EntityDescriptor, KeyDescriptor};
use samael::service_provider::ServiceProvider;
use tenancy::catalog::Tenant;
use time::OffsetDateTime;

use crate::connections::{Connection, SamlIdp};
use crate::provision::Asserted;
use crate::requests;
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
}

impl Sso {
    /// Signs the verified identity in: consumes the request and the assertion id (replay), finds
    /// links or creates the user, records the login. All in one transaction. A user whose own
    /// TOTP is still needed gets an `mfa_token` instead of a session (see
    /// [`crate::provision::Outcome`]).
    pub async fn sign_in(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        v: &Verified,
    ) -> Result<SignedIn, SsoError> {
        let verified_domains = self.domains.verified(tenant.id).await?;
        let seats = t.auth.seats(tenant.id).await?;
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
        let (outcome, how, changed) = crate::provision::user_for(
            &mut tx,
            &v.connection,
            &v.identity,
            &verified_domains,
            seats,
        )
        .await?;
        let user = match &outcome {
            crate::provision::Outcome::Session(u)
            | crate::provision::Outcome::Mfa { user: u, .. } => *u,
        };
        identity::users::security_event(
            &mut tx,
            "sso.login",
            Some(user),
            None,
            serde_json::json!({"connection_id": v.connection.id.to_string(), "account": how}),
        )
        .await?;
        let signed_in = match outcome {
            crate::provision::Outcome::Session(u) => SignedIn::Session(u),
            crate::provision::Outcome::Mfa { user, detail } => {
                let token = identity::onetime::create(
                    &mut tx,
                    user,
                    identity::onetime::Purpose::MfaLogin,
                    detail,
                )
                .await?;
                SignedIn::Mfa {
                    user,
                    mfa_token: token,
                }
            }
        };
        tx.commit().await?;
        if let Some(change) = changed {
            t.auth.changed(change).await;
        }
        Ok(signed_in)
    }
}

/// The end of a successful SSO login.
#[derive(Debug)]
pub enum SignedIn {
    /// Issue tokens for this user.
    Session(tenancy::ids::UserId),
    /// The user still owes their TOTP: answer `mfa_required` with this token (completed by
    /// `/api/v1/auth/mfa/verify`, which calls [`crate::provision::after_mfa`]).
    Mfa {
        user: tenancy::ids::UserId,
        mfa_token: String,
    },
}
