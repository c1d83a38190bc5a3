-- Transactional email, the remaining gaps (issue 17). Expand only: a running app at V18 neither
-- reads nor writes `email_domains`, and the wider locale check accepts everything the narrower one
-- did.
--
-- A tenant's own sending domain: mail of a tenant whose domain is verified goes out `From` that
-- domain and DKIM-signed for it (`d=`), with the tenant's own ed25519 key. One domain per tenant
-- (`UNIQUE (tenant_id)`); changing it replaces the key and starts unverified again. The private
-- key is sealed with the tenant's data key (registry entry `email_domains.key_sealed`, so key
-- rotation re-seals it and erasing the tenant destroys it); the public half is public by design
-- (it is published in DNS). `verified_at` is set when the TXT record was found in DNS with this
-- key: until then the platform's domain and key sign.
CREATE TABLE email_domains (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    domain      text NOT NULL CHECK (domain = lower(domain) AND domain LIKE '%.%'),
    selector    text NOT NULL CHECK (selector ~ '^[a-z0-9][a-z0-9-]*$'),
    -- base64 of the 32-byte ed25519 public key (`p=` of the TXT record).
    public_key  text NOT NULL,
    key_sealed  bytea NOT NULL,
    verified_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id)
);

ALTER TABLE email_domains ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_domains FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_domains
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON email_domains TO platform_app;
SELECT platform_attach_fence('email_domains'::regclass);
-- Setting, replacing and verifying the domain are an administrator's acts: audited (the key is
-- never shown; the domain, selector and verification are).
SELECT platform_audit_attach('email_domains', 'email_domain', 'id', 'updated_at,key_sealed,public_key',
                             'domain,selector,verified_at');

-- `users.locale` is set by the user now (`PATCH /api/v1/me`): any BCP 47 language tag the API
-- accepts (language, optional script, optional region: `fr`, `fr-CA`, `zh-Hant-TW`, `es-419`),
-- in the case the API normalises it to.
-- Swapped under one brief lock; the scan that validates it takes no lock that blocks writers.
ALTER TABLE users DROP CONSTRAINT users_locale_check,
    ADD CONSTRAINT users_locale_check
        CHECK (locale ~ '^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$') NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT users_locale_check;
-- The users' audit triggers were generated (V8) before `locale` existed (V12), so a change of it
-- alone left no event: regenerated with it (same arguments as V4, the locale shown).
SELECT platform_audit_attach('users', 'user', 'id', 'updated_at,totp_last_step',
                             'role_id,email_verified_at,totp_enabled_at,locale');

-- The tenant's email settings: open tracking, off by default (a 1×1 image in HTML mail whose
-- first fetch records an `opened` event; `email::tracking`).
CREATE TABLE email_settings (
    tenant_id     uuid NOT NULL PRIMARY KEY,
    open_tracking boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE email_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_settings
    USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON email_settings TO platform_app;
SELECT platform_attach_fence('email_settings'::regclass);
SELECT platform_audit_attach('email_settings', 'email_settings', 'tenant_id', 'updated_at', 'open_tracking');
