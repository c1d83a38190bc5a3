-- Transactional email (issue 17): every message a job sent (or withheld), the provider's events
-- about it, the per-tenant suppression list every send checks, a user's locale and the tenant's
-- branding for the templates. Expand only: a running app at V11 ignores all of it.

ALTER TABLE users ADD COLUMN locale text CHECK (locale ~ '^[a-z]{2}(-[A-Z]{2})?$');

-- One row per message (= per email job: the job id is the message id, so a retried job finds
-- what its earlier run did). `sending` is written and committed before the provider is called,
-- so a run that crashed mid-call asks the provider instead of sending again.
CREATE TABLE email_messages (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    kind        text NOT NULL,
    category    text NOT NULL,
    recipient   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('sending', 'sent', 'suppressed', 'soft_bounced')),
    transport   text CHECK (transport IN ('provider', 'smtp', 'file')),
    provider_message_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX email_messages_provider ON email_messages (tenant_id, provider_message_id);

CREATE TABLE email_events (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    message_id  uuid,
    recipient   text NOT NULL,
    type        text NOT NULL CHECK (type IN ('sent', 'delivered', 'bounced', 'soft_bounced',
                                             'complained', 'opened', 'suppressed', 'unsubscribed')),
    -- The provider's identity of the event: a replayed webhook finds it and changes nothing.
    provider_event_id text,
    detail      jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX email_events_replay ON email_events (tenant_id, provider_event_id)
    WHERE provider_event_id IS NOT NULL;
CREATE INDEX email_events_listing ON email_events (tenant_id, message_id, id);

-- Who is not mailed. `category` '*' withholds every kind (hard bounce, complaint, manual); an
-- unsubscribe names the category it came from, and never withholds security mail (the code
-- refuses to record one for it, and the check ignores unsubscribes for security mail).
CREATE TABLE email_suppressions (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    recipient   text NOT NULL CHECK (recipient = lower(recipient)),
    reason      text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
    category    text NOT NULL DEFAULT '*',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, recipient, reason, category)
);

-- The tenant's look in its messages (its name comes from the catalog).
CREATE TABLE email_branding (
    tenant_id     uuid NOT NULL PRIMARY KEY,
    logo_url      text CHECK (logo_url ~ '^https://'),
    primary_color text CHECK (primary_color ~ '^#[0-9a-fA-F]{6}$'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['email_messages', 'email_events', 'email_suppressions', 'email_branding'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO platform_app', t);
        PERFORM platform_attach_fence(t::regclass);
    END LOOP;
END $$;

-- A suppression added or removed (by a webhook, an unsubscribe or an administrator) is audited;
-- messages and events are the provider's record, not actions.
SELECT platform_audit_attach('email_suppressions', 'email_suppression', 'id', '', 'recipient,reason,category');
SELECT platform_audit_attach('email_branding', 'email_branding', 'tenant_id', 'updated_at', 'logo_url,primary_color');
