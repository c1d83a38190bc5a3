-- Long-running operations (placement moves): a persisted state machine, resumable after a crash
-- at any step. A runner holds a lease while it works; an expired lease lets another take over.
CREATE TABLE operations (
    id                 uuid PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('promote', 'demote', 'move')),
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    state              text NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    step               text NOT NULL,
    source             jsonb NOT NULL,
    target             jsonb NOT NULL,
    target_url_sealed  bytea,
    progress           jsonb NOT NULL DEFAULT '{}',
    error              text,
    cancel_requested   boolean NOT NULL DEFAULT false,
    lease_owner        text,
    lease_until        timestamptz,
    source_purged      boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- At most one unfinished move per tenant.
CREATE UNIQUE INDEX operations_one_active ON operations (tenant_id) WHERE state IN ('pending', 'running');
