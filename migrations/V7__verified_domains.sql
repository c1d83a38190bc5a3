-- Verified email domains of a tenant (issue 14, hole 3): an SSO connection may assert identities
-- only for addresses in one of these, and an identity links to an existing account only when the
-- account's address is in one. A domain is claimed by a tenant (a token it publishes in DNS as
-- `_platform-verify.<domain>` TXT), then verified by the DNS check or by an operator. Several
-- tenants may claim a domain (each with its own token), but only one may hold it verified: the
-- partial unique index decides a race between two verifications. Expand-only (code at V6 never
-- reads it). In the control plane, not the tenant's database: the "one tenant only" rule spans
-- tenants.

CREATE TABLE sso_domains (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    domain       text NOT NULL,
    -- The challenge the tenant publishes; public by design (it is in DNS), one per claim.
    token        text NOT NULL,
    verified_at  timestamptz,
    -- How it was verified: `dns` (the TXT record was found) or `operator` (the admin API).
    method       text CHECK (method IN ('dns', 'operator')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, domain),
    CHECK ((verified_at IS NULL) = (method IS NULL))
);
CREATE UNIQUE INDEX sso_domains_verified_once ON sso_domains (domain) WHERE verified_at IS NOT NULL;

-- Every claim, verification and removal is in the operators' trail with the tenant, the actor
-- (a tenant admin or the operator) and the route; the token is never shown.
SELECT platform_admin_audit_attach('sso_domains', 'sso_domain', 'tenant_id,domain', '', 'domain,verified_at,method', 'tenant_id');
