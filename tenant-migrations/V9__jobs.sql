-- Background jobs (issue 16): a tenant table like any other (tenant_id first in the key, forced
-- RLS, the fence trigger), so a job is enqueued in the transaction that causes it, is visible to
-- no other tenant, and moves with its tenant's data. Replaces the outbox (its rows become
-- `email.*` jobs below); the outbox table stays until a later contract migration drops it.
--
-- States: pending -> running -> succeeded | retrying -> running ... -> dead; cancelled by an
-- operator. A running job holds a lease (`lease_token`, `lease_until`): completing, retrying or
-- dead-lettering it checks the token, so a worker whose lease was taken over cannot commit.
CREATE TABLE jobs (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'retrying', 'succeeded', 'dead', 'cancelled')),
    priority      smallint NOT NULL DEFAULT 0,
    payload       jsonb NOT NULL DEFAULT '{}',
    -- Secret part of the payload (a single-use token), sealed with the tenant's data key.
    payload_sealed bytea,
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    lease_token   uuid,
    lease_until   timestamptz,
    last_error    text,
    unique_key    text,
    unique_until  timestamptz,
    -- After this the job is worth nothing (the token it carries expired): dropped unrun.
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- What a worker claims: due work, and running jobs whose lease ran out (orphans).
CREATE INDEX jobs_due ON jobs (tenant_id, priority DESC, run_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX jobs_leased ON jobs (tenant_id, lease_until) WHERE state = 'running';
CREATE INDEX jobs_listing ON jobs (tenant_id, state, kind, id);
-- At most one live job per key (see `unique_until` for the window).
CREATE UNIQUE INDEX jobs_unique ON jobs (tenant_id, unique_key) WHERE unique_key IS NOT NULL;

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO platform_app;
SELECT platform_attach_fence('jobs');
-- Not audited row by row (like the outbox it replaces): a job follows the audited write that
-- enqueued it, what a job does is audited with the actor `job` / its kind, and operators' retries,
-- discards and pauses are in the control plane's admin trail. An event per claim and completion
-- would also queue every job of a tenant on its audit chain head.

-- Which tenants of this database have work due, and when the next is due: for the workers' sweep,
-- which cannot read across tenants under RLS. Returns ids and times only, never job contents.
CREATE FUNCTION platform_jobs_due(horizon interval) RETURNS TABLE (tenant_id uuid, next_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT tenant_id, min(at) FROM (
            SELECT tenant_id, run_at AS at FROM jobs WHERE state IN ('pending', 'retrying')
            UNION ALL
            SELECT tenant_id, lease_until FROM jobs WHERE state = 'running'
        ) d
        WHERE at <= now() + horizon
        GROUP BY tenant_id
    $$;
REVOKE ALL ON FUNCTION platform_jobs_due(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_jobs_due(interval) TO platform_app;

-- The outbox's unsent, unexpired messages become email jobs (bodies stay sealed with the same
-- tenant key; the purpose is unchanged). A tenant fenced here is left to its live copy.
INSERT INTO jobs (tenant_id, id, kind, payload, payload_sealed, expires_at, created_at, run_at)
SELECT o.tenant_id, o.id,
       CASE o.kind WHEN 'invitation' THEN 'email.invitation'
                   WHEN 'password_reset' THEN 'email.password_reset'
                   ELSE 'email.verification' END,
       jsonb_build_object('recipient', o.recipient, 'subject', o.subject),
       o.body_sealed, o.expires_at, o.created_at, o.created_at
FROM outbox o
WHERE o.sent_at IS NULL AND o.body_sealed IS NOT NULL
  AND (o.expires_at IS NULL OR o.expires_at > now())
  AND NOT EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = o.tenant_id);
