//! Structural checks on a SAML Response before any cryptography, on a strict XML parser
//! (roxmltree: no DTD, no entities). They refuse the shapes signature-wrapping attacks need:
//! exactly one `Assertion` (no `EncryptedAssertion`), no comments or processing instructions
//! (comment injection splits a NameID's text without changing its canonical form), unique `ID`
//! attributes, and every `ds:Signature` enveloped in the Response or the one Assertion with a
//! single `Reference` to its parent's own `ID`. What is read here is only a routing hint (which
//! request or IdP this claims to answer); identity is read later from signature-verified XML.

use roxmltree::{Document, Node, NodeType, ParsingOptions};

use crate::{Rejection, SsoError};

pub(crate) const PROTOCOL_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const ASSERTION_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Unsigned hints read from a structurally sound Response.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// `InResponseTo` of the Response, else of the assertion's SubjectConfirmationData.
    pub in_response_to: Option<String>,
    /// The assertion's Issuer.
    pub issuer: Option<String>,
    /// The one assertion's ID.
    pub assertion_id: String,
    /// The Response's Destination.
    pub destination: Option<String>,
}

fn bad(detail: &str) -> SsoError {
    SsoError::rejected(Rejection::Structure, detail)
}

fn is(n: &Node<'_, '_>, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name
}

/// Checks `xml` and returns its hints.
pub(crate) fn check(xml: &str) -> Result<Hints, SsoError> {
    let doc = Document::parse_with_options(
        xml,
        ParsingOptions {
            allow_dtd: false,
            ..ParsingOptions::default()
        },
    )
    .map_err(|e| SsoError::rejected(Rejection::Malformed, format!("not well-formed XML: {e}")))?;
    let root = doc.root_element();
    if !is(&root, PROTOCOL_NS, "Response") {
        return Err(SsoError::rejected(
            Rejection::Malformed,
            "the root element is not a samlp:Response",
        ));
    }
    let mut assertions = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for n in doc.descendants() {
        match n.node_type() {
            NodeType::Comment => return Err(bad("the response contains an XML comment")),
            NodeType::PI => return Err(bad("the response contains a processing instruction")),
            _ => {}
        }
        if !n.is_element() {
            continue;
        }
        if n.tag_name().name() == "EncryptedAssertion" {
            return Err(bad("encrypted assertions are not supported"));
        }
        if n.tag_name().name() == "Assertion" {
            assertions.push(n);
        }
        for a in n.attributes() {
            if a.name().eq_ignore_ascii_case("id") && !ids.insert(a.value()) {
                return Err(bad("two elements share an ID"));
            }
        }
    }
    let [assertion] = assertions[..] else {
        return Err(bad(&format!(
            "the response must contain exactly one assertion, not {}",
            assertions.len()
        )));
    };
    if !is(&assertion, ASSERTION_NS, "Assertion") || assertion.parent_element() != Some(root) {
        return Err(bad(
            "the assertion is not a saml:Assertion child of the Response",
        ));
    }
    let assertion_id = assertion
        .attribute("ID")
        .ok_or_else(|| bad("the assertion has no ID"))?;
    for sig in doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Signature")
    {
        if !is(&sig, DSIG_NS, "Signature") {
            return Err(bad("a Signature element outside the XML-DSig namespace"));
        }
        let parent = sig
            .parent_element()
            .ok_or_else(|| bad("a detached signature"))?;
        if parent != root && parent != assertion {
            return Err(bad(
                "a signature that is not enveloped in the Response or the assertion",
            ));
        }
        let refs: Vec<_> = sig
            .descendants()
            .filter(|n| is(n, DSIG_NS, "Reference"))
            .collect();
        let expected = parent.attribute("ID").map(|id| format!("#{id}"));
        match (&refs[..], expected) {
            ([r], Some(exp)) if r.attribute("URI") == Some(exp.as_str()) => {}
            _ => {
                return Err(bad(
                    "a signature must have exactly one Reference, to the ID of the element that contains it",
                ));
            }
        }
    }
    let scd_irt = assertion
        .descendants()
        .find(|n| is(n, ASSERTION_NS, "SubjectConfirmationData"))
        .and_then(|n| n.attribute("InResponseTo"));
    Ok(Hints {
        in_response_to: root
            .attribute("InResponseTo")
            .or(scd_irt)
            .map(str::to_owned),
        issuer: assertion
            .children()
            .find(|n| is(n, ASSERTION_NS, "Issuer"))
            .and_then(|n| n.text())
            .map(|s| s.trim().to_owned()),
        assertion_id: assertion_id.to_owned(),
        destination: root.attribute("Destination").map(str::to_owned),
    })
}
