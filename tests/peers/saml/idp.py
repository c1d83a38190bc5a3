"""A real SAML 2.0 identity provider for the SSO tests: pysaml2's IdP (saml2.server.Server),
signing with xmlsec1. Nobody here implements the protocol: this script only feeds pysaml2 its
configuration and a user, and prints what pysaml2 produces.

Usage: idp.py keygen|metadata|respond, with a JSON request on stdin and a JSON answer on stdout.
  keygen   {"dir", "cn"}                          -> {"key", "cert"} (paths; RSA 2048, self-signed)
  metadata {"entity_id", "sso_url", "key", "cert"} -> {"xml"}
  respond  {"entity_id", "sso_url", "key", "cert", "sp_metadata",
            "authn_request": SAMLRequest of the HTTP-Redirect binding, or null (unsolicited),
            "sp_entity_id", "acs_url" (for unsolicited responses),
            "user": {"name_id", "attributes": {name: [values]}},
            "sign_assertion": true, "sign_response": false,
            "clock_offset": seconds the IdP's clock is off by (expired / not yet valid),
            "audience": override of the SP entity id the assertion is for,
            "destination": override of the ACS URL (Destination and Recipient),
            "sha1": sign with RSA-SHA1 / SHA-1 (outside the SP's allow-list)}
           -> {"saml_response": base64 of the Response XML (the HTTP-POST binding's value)}
"""

import base64
import datetime
import json
import os
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def keygen(req):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, req.get("cn", "test-idp"))])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    os.makedirs(req["dir"], exist_ok=True)
    key_path = os.path.join(req["dir"], "key.pem")
    cert_path = os.path.join(req["dir"], "cert.pem")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return {"key": key_path, "cert": cert_path}


def shift_clock(offset):
    """The IdP's clock is `offset` seconds off: every time pysaml2 reads is shifted."""
    if not offset:
        return
    real_time, real_gmtime = time.time, time.gmtime
    time.time = lambda: real_time() + offset
    time.gmtime = lambda t=None: real_gmtime(time.time() if t is None else t)
    import saml2.time_util as tu

    class Shifted(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.now(tz) + datetime.timedelta(seconds=offset)

        @classmethod
        def utcnow(cls):
            return datetime.datetime.utcnow() + datetime.timedelta(seconds=offset)

    tu.datetime = Shifted


def server(req, sp_metadata=None):
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS
    from saml2.server import Server
    from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

    conf = {
        "entityid": req["entity_id"],
        "key_file": req["key"],
        "cert_file": req["cert"],
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "service": {
            "idp": {
                "endpoints": {"single_sign_on_service": [(req["sso_url"], BINDING_HTTP_REDIRECT)]},
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None,
                                       "name_form": NAME_FORMAT_BASIC}},
                "want_authn_requests_signed": False,
            }
        },
    }
    if sp_metadata:
        conf["metadata"] = {"inline": [sp_metadata]}
    c = IdPConfig()
    c.load(conf)
    return Server(config=c)


def metadata(req):
    from saml2.metadata import create_metadata_string

    idp = server(req)
    xml = create_metadata_string(None, config=idp.config, valid=None)
    return {"xml": xml.decode() if isinstance(xml, bytes) else xml}


def respond(req):
    from saml2 import BINDING_HTTP_REDIRECT
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
    from saml2.saml import AUTHN_PASSWORD

    shift_clock(req.get("clock_offset", 0))
    idp = server(req, req["sp_metadata"])
    if req.get("authn_request"):
        parsed = idp.parse_authn_request(req["authn_request"], BINDING_HTTP_REDIRECT)
        args = idp.response_args(parsed.message)
    else:
        args = {"in_response_to": None, "destination": req["acs_url"], "sp_entity_id": req["sp_entity_id"]}
    if req.get("audience"):
        args["sp_entity_id"] = req["audience"]
    if req.get("destination"):
        args["destination"] = req["destination"]
    from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

    if req.get("sha1"):
        args["sign_alg"], args["digest_alg"] = SIG_RSA_SHA1, DIGEST_SHA1
    else:
        args["sign_alg"], args["digest_alg"] = SIG_RSA_SHA256, DIGEST_SHA256
    args.pop("binding", None)
    user = req["user"]
    resp = idp.create_authn_response(
        identity=user.get("attributes", {}),
        userid=user["name_id"],
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user["name_id"]),
        authn={"class_ref": AUTHN_PASSWORD, "authn_auth": req["entity_id"]},
        sign_assertion=req.get("sign_assertion", True),
        sign_response=req.get("sign_response", False),
        **args,
    )
    xml = str(resp)
    return {"saml_response": base64.b64encode(xml.encode()).decode()}


def main():
    command = sys.argv[1]
    req = json.load(sys.stdin)
    out = {"keygen": keygen, "metadata": metadata, "respond": respond}[command](req)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
