-- Enterprise SSO (issue 7): per-tenant SAML and OIDC connections, the tenant's SSO policy, login
-- requests in flight (SAML AuthnRequest ids, OIDC state/nonce/PKCE: single use, expiring), the
-- SAML assertion-id replay cache (kept for the assertion's lifetime, so it survives a restart),
-- and the link between an IdP subject and a user. Same rules as V1-V3: tenant_id NOT NULL,
-- primary key starting with tenant_id, UUIDv7 ids, ENABLE + FORCE RLS, grants to platform_app,
-- the fence trigger. Expand-only: code at V3 never reads these tables.

CREATE TABLE sso_connections (
    tenant_id           uuid NOT NULL,
    id                  uuid NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('saml', 'oidc', 'github')),
    name                text NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    -- Non-secret settings (IdP metadata and certificates, issuer, client id, scopes).
    config              jsonb NOT NULL DEFAULT '{}',
    -- The OIDC/OAuth2 client secret sealed with the tenant's data key; never stored in clear.
    secret_sealed       bytea,
    -- SAML: the IdP's entity id (an unsolicited response is matched to its connection by it).
    idp_entity_id       text,
    allow_idp_initiated boolean NOT NULL DEFAULT false,
    role_attribute      text,
    role_mapping        jsonb NOT NULL DEFAULT '{}',
    default_role        text NOT NULL DEFAULT 'member',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX sso_connections_idp_entity ON sso_connections (tenant_id, idp_entity_id)
    WHERE idp_entity_id IS NOT NULL;

CREATE TABLE sso_settings (
    tenant_id     uuid NOT NULL,
    -- Password login is refused for the tenant's users except owners (break-glass).
    enforce_sso   boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);

CREATE TABLE sso_login_requests (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    connection_id  uuid NOT NULL,
    -- SHA-256 of the SAML AuthnRequest ID or of the OIDC `state`.
    request_hash   bytea NOT NULL,
    -- OIDC: the nonce and the PKCE verifier, sealed with the tenant's data key.
    secrets_sealed bytea,
    expires_at     timestamptz NOT NULL,
    consumed_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, request_hash),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE sso_seen_assertions (
    tenant_id      uuid NOT NULL,
    connection_id  uuid NOT NULL,
    assertion_id   text NOT NULL,
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, assertion_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE sso_identities (
    tenant_id      uuid NOT NULL,
    connection_id  uuid NOT NULL,
    subject        text NOT NULL,
    user_id        uuid NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, connection_id, subject),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES sso_connections (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sso_identities_user ON sso_identities (tenant_id, user_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sso_connections', 'sso_settings', 'sso_login_requests',
                             'sso_seen_assertions', 'sso_identities'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id())',
            t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO platform_app', t);
        PERFORM platform_attach_fence(t::regclass);
    END LOOP;
END $$;

-- Audited like the tables of V4: who changed a connection or the tenant's SSO policy, and which
-- identity-provider subject was linked to which user (secrets show as changed, never as values).
-- Login requests and seen assertions are short-lived protocol state; a refused login is a
-- security event, which V4 already turns into an audit event.
SELECT platform_audit_attach('sso_connections', 'sso_connection', 'id', 'updated_at', 'kind,name,enabled,allow_idp_initiated,default_role');
SELECT platform_audit_attach('sso_settings', 'sso_settings', 'tenant_id', 'updated_at', 'enforce_sso');
SELECT platform_audit_attach('sso_identities', 'sso_identity', 'connection_id,subject', 'last_login_at', 'connection_id,user_id');
