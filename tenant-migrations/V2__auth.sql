-- Auth: users, data-driven roles and permissions, invitations, sessions with rotating refresh
-- tokens, security events, TOTP recovery codes, single-use tokens (email verification, password
-- reset, MFA login step), the outbox, and project membership. Same rules as V1: tenant_id NOT
-- NULL, primary key starting with tenant_id, UUIDv7 ids, ENABLE + FORCE RLS, grants to
-- platform_app. Expand-only: V1 code keeps working (api_keys.role_id is nullable = admin).

CREATE TABLE roles (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    name          text NOT NULL,
    builtin       boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE role_permissions (
    tenant_id     uuid NOT NULL,
    role_id       uuid NOT NULL,
    permission    text NOT NULL,
    PRIMARY KEY (tenant_id, role_id, permission),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE users (
    tenant_id         uuid NOT NULL,
    id                uuid NOT NULL,
    email             text NOT NULL,
    name              text NOT NULL,
    password_hash     text NOT NULL,
    role_id           uuid NOT NULL,
    email_verified_at timestamptz,
    -- TOTP: the secret sealed with the tenant's data key; enabled once confirmed.
    totp_secret_sealed bytea,
    totp_enabled_at   timestamptz,
    -- The last TOTP time step accepted: a step is usable once (advanced atomically).
    totp_last_step    bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id)
);
CREATE UNIQUE INDEX users_email ON users (tenant_id, lower(email));

CREATE TABLE invitations (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    email         text NOT NULL,
    role_id       uuid NOT NULL,
    token_hash    bytea NOT NULL,
    invited_by    uuid,
    expires_at    timestamptz NOT NULL,
    accepted_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE sessions (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    user_id       uuid NOT NULL,
    user_agent    text,
    ip            text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    revoked_reason text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);

CREATE TABLE refresh_tokens (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    session_id    uuid NOT NULL,
    token_hash    bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- Set when the token is used: its successor, and (for the grace window only) the
    -- successor's value sealed with the tenant's data key so a retry gets the same one.
    rotated_at    timestamptz,
    replaced_by   uuid,
    successor_sealed bytea,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE security_events (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    kind          text NOT NULL,
    user_id       uuid,
    session_id    uuid,
    detail        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE recovery_codes (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    user_id       uuid NOT NULL,
    code_hash     bytea NOT NULL,
    used_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Single-use, expiring tokens: email verification, password reset, the MFA step of a login.
CREATE TABLE one_time_tokens (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    user_id       uuid NOT NULL,
    purpose       text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset', 'mfa_login')),
    token_hash    bytea NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}',
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Messages to send (a later issue delivers them).
CREATE TABLE outbox (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    kind          text NOT NULL,
    recipient     text NOT NULL,
    subject       text NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE project_members (
    tenant_id     uuid NOT NULL,
    project_id    uuid NOT NULL,
    user_id       uuid NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'member')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, project_id, user_id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- A key made before roles existed has no role and acts as `admin`.
ALTER TABLE api_keys ADD COLUMN role_id uuid;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['roles', 'role_permissions', 'users', 'invitations', 'sessions',
                             'refresh_tokens', 'security_events', 'recovery_codes',
                             'one_time_tokens', 'outbox', 'project_members'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id())',
            t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO platform_app', t);
    END LOOP;
END $$;
