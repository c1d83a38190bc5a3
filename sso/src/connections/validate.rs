//! Checking what an admin submits before it is stored: reading a SAML IdP's metadata (entity id,
//! redirect endpoint, signing certificates, with extra certificates for rotation) and checking a
//! connection's name and role mapping against the tenant's roles.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use identity::{Grantor, grants};
use samael::metadata::EntityDescriptor;
use tenancy::dataplane::TenantTx;

use super::{SamlIdp, Settings};
use crate::SsoError;

/// Reads a SAML IdP from its metadata XML, adding `extra_certificates` (PEM or base64 DER).
pub fn saml_from_metadata(
    xml: &str,
    metadata_url: Option<String>,
    extra_certificates: &[String],
) -> Result<SamlIdp, SsoError> {
    if xml.len() > 512 * 1024 {
        return Err(SsoError::Invalid(
            "`idp_metadata_xml` is larger than 512 KiB".into(),
        ));
    }
    let ed: EntityDescriptor = xml.parse().map_err(|_| {
        SsoError::Invalid("`idp_metadata_xml` is not a SAML EntityDescriptor".into())
    })?;
    let entity_id = ed
        .entity_id
        .clone()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| SsoError::Invalid("the IdP metadata has no entityID".into()))?;
    let idp = ed
        .idp_sso_descriptors
        .as_ref()
        .and_then(|d| d.first())
        .ok_or_else(|| SsoError::Invalid("the metadata has no IDPSSODescriptor".into()))?;
    let sso_url = idp
        .single_sign_on_services
        .iter()
        .find(|s| s.binding == samael::metadata::HTTP_REDIRECT_BINDING)
        .map(|s| s.location.clone())
        .ok_or_else(|| {
            SsoError::Invalid(
                "the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding".into(),
            )
        })?;
    let mut certificates = Vec::new();
    for kd in &idp.key_descriptors {
        if kd
            .key_use
            .as_deref()
            .is_some_and(|u| u != "signing" && !u.is_empty())
        {
            continue;
        }
        for c in kd.key_info.x509_data.iter().flat_map(|x| &x.certificates) {
            certificates.push(normalise_cert(c)?);
        }
    }
    for c in extra_certificates {
        certificates.push(normalise_cert(c)?);
    }
    let certificates: Vec<String> = certificates
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if certificates.is_empty() {
        return Err(SsoError::Invalid(
            "the IdP metadata has no signing certificate and none was given: responses could not be verified".into(),
        ));
    }
    Ok(SamlIdp {
        entity_id,
        sso_url,
        certificates,
        metadata_xml: xml.to_owned(),
        metadata_url,
    })
}

/// A certificate as base64 DER without whitespace (accepts PEM). Checks it decodes.
fn normalise_cert(c: &str) -> Result<String, SsoError> {
    let body: String = c
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(&body)
        .map_err(|_| SsoError::Invalid("a certificate is not base64 (PEM or DER)".into()))?;
    if der.len() < 64 || der[0] != 0x30 {
        return Err(SsoError::Invalid(
            "a certificate is not an X.509 DER structure".into(),
        ));
    }
    Ok(body)
}

/// Checks the role names of `s` exist and that `grantor` may give each of them (the grant rule:
/// a connection hands its roles to whoever its IdP asserts); SSO never grants `owner`.
pub(super) async fn check_roles(
    tx: &mut TenantTx,
    grantor: &Grantor<'_>,
    s: &Settings,
) -> Result<(), SsoError> {
    let mut names: Vec<&str> = s.role_mapping.iter().map(|r| r.role.as_str()).collect();
    names.push(&s.default_role);
    for name in names {
        if name == "owner" {
            return Err(SsoError::Invalid(
                "SSO cannot grant the `owner` role; owners are made by other owners".into(),
            ));
        }
        grants::grantable_role(tx, grantor, name).await?;
    }
    if s.name.trim().is_empty() || s.name.len() > 100 {
        return Err(SsoError::Invalid(
            "`name` must be 1 to 100 characters".into(),
        ));
    }
    if s.role_mapping.len() > 100 {
        return Err(SsoError::Invalid(
            "`role_mapping` has more than 100 rules".into(),
        ));
    }
    Ok(())
}
