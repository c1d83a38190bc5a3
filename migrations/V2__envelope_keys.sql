-- Envelope encryption: data-encryption keys (DEKs) per scope ('platform' or a tenant id), stored
-- only wrapped by a key-encryption key (KEK) named by kek_id. Deleting a scope's rows destroys
-- its key (crypto-shredding): its sealed secrets, even in old backups, can no longer be opened.
CREATE TABLE data_keys (
    scope       text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    kek_id      text NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, version)
);
CREATE INDEX data_keys_kek ON data_keys (kek_id);

-- Platform-level secrets (e.g. the data-plane role's password), sealed with the platform DEK.
CREATE TABLE platform_secrets (
    name        text PRIMARY KEY,
    sealed      bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A dedicated tenant's data-plane URL, sealed with the tenant's DEK (purpose `tenant.db_url`).
ALTER TABLE tenants ADD COLUMN db_url_sealed bytea;
