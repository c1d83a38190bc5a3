#!/usr/bin/env bash
# Installs the real identity providers the SSO tests start, from the package registries
# (idempotent; cheap when already installed):
#   oidc/  panva/oidc-provider from npm (npm ci, pinned by package-lock.json)
#   unleash/  Unleash's client specification from npm (npm ci), for the flag evaluator's tests
#   mail/  aiosmtpd (the SMTP sink) and dkimpy (DKIM verification) from PyPI in a virtualenv
#          (pinned by requirements.txt), for the email tests
#   stripe/  the official Stripe library from PyPI in a virtualenv (pinned by requirements.txt): it
#          signs the billing tests' webhook payloads
#   saml/  pysaml2 from PyPI in a virtualenv (pinned by requirements.txt); it signs with the
#          xmlsec1 binary (Debian package xmlsec1, installed by `cargo xtask test`)
set -euo pipefail
cd "$(dirname "$0")"

command -v node >/dev/null || { echo "tests/peers/setup.sh: node is missing" >&2; exit 1; }
command -v xmlsec1 >/dev/null || { echo "tests/peers/setup.sh: xmlsec1 is missing (cargo xtask test installs it; or apt-get install xmlsec1)" >&2; exit 1; }

if [ ! -f oidc/node_modules/.installed ] || [ oidc/package-lock.json -nt oidc/node_modules/.installed ]; then
    echo "== installing the OIDC peer (oidc-provider, npm ci)"
    (cd oidc && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
fi

if [ ! -f unleash/node_modules/.installed ] || [ unleash/package-lock.json -nt unleash/node_modules/.installed ]; then
    echo "== installing Unleash's client specification (npm ci)"
    (cd unleash && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
fi

if [ ! -f saml/.venv/.installed ] || [ saml/requirements.txt -nt saml/.venv/.installed ]; then
    echo "== installing the SAML peer (pysaml2, pip)"
    rm -rf saml/.venv
    python3 -m venv saml/.venv
    saml/.venv/bin/pip install --quiet --disable-pip-version-check -r saml/requirements.txt
    touch saml/.venv/.installed
fi

if [ ! -f mail/.venv/.installed ] || [ mail/requirements.txt -nt mail/.venv/.installed ]; then
    echo "== installing the mail peers (aiosmtpd, dkimpy, pip)"
    rm -rf mail/.venv
    python3 -m venv mail/.venv
    mail/.venv/bin/pip install --quiet --disable-pip-version-check -r mail/requirements.txt
    touch mail/.venv/.installed
fi

if [ ! -f stripe/.venv/.installed ] || [ stripe/requirements.txt -nt stripe/.venv/.installed ]; then
    echo "== installing the Stripe library (webhook signing, pip)"
    rm -rf stripe/.venv
    python3 -m venv stripe/.venv
    stripe/.venv/bin/pip install --quiet --disable-pip-version-check -r stripe/requirements.txt
    touch stripe/.venv/.installed
fi
