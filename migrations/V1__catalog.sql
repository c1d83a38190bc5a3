-- Control plane (catalog): what the platform knows about a tenant as its customer.
-- Tenant-owned data never lives here (see tenant-migrations/).

CREATE TABLE db_servers (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    -- The admin URL, sealed with the master key (AES-256-GCM, purpose-bound). Never in clear.
    admin_url_sealed  bytea NOT NULL,
    host              text NOT NULL,
    port              integer NOT NULL,
    connection_budget integer NOT NULL CHECK (connection_budget > 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id            uuid PRIMARY KEY,
    slug          text NOT NULL UNIQUE,
    name          text NOT NULL,
    plan          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    placement     text NOT NULL CHECK (placement IN ('shared', 'dedicated')),
    db_server_id  uuid REFERENCES db_servers (id),
    db_name       text,
    -- Bumped on every change that affects routing; caches compare it.
    epoch         bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    CHECK ((placement = 'shared' AND db_name IS NULL) OR (placement = 'dedicated' AND db_name IS NOT NULL AND db_server_id IS NOT NULL))
);

CREATE TABLE tenant_domains (
    domain      text PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);

-- Idempotency-Key records for creating POSTs of the admin API.
CREATE TABLE idempotency_keys (
    scope         text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status        integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
