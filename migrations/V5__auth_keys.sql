-- Auth in the control plane: the platform's JWT signing keys (private halves sealed with the
-- platform data key, purpose `jwt.signing_key:<kid>`), and each tenant's auth policy.

CREATE TABLE jwt_signing_keys (
    kid             text PRIMARY KEY,
    alg             text NOT NULL CHECK (alg = 'EdDSA'),
    private_sealed  bytea NOT NULL,
    public_key      bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Set when a newer key takes over; the public key stays published until tokens it
    -- signed have expired.
    retired_at      timestamptz
);

ALTER TABLE tenants ADD COLUMN signup text NOT NULL DEFAULT 'invite_only'
    CHECK (signup IN ('invite_only', 'open'));
ALTER TABLE tenants ADD COLUMN mfa_required boolean NOT NULL DEFAULT false;
