-- Plans with their rate limits and audit retention, per-tenant overrides, and the operators'
-- audit trail (the control-plane twin of the tenant's audit_events, see tenant V4).

CREATE TABLE plans (
    name                 text PRIMARY KEY,
    requests_per_second  integer NOT NULL CHECK (requests_per_second > 0),
    burst                integer NOT NULL CHECK (burst > 0),
    audit_retention_days integer NOT NULL CHECK (audit_retention_days > 0),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
INSERT INTO plans (name, requests_per_second, burst, audit_retention_days) VALUES
    ('free', 20, 40, 30),
    ('pro', 200, 400, 365),
    ('enterprise', 2000, 4000, 2555);

-- NULL: the plan's value.
ALTER TABLE tenants ADD COLUMN rate_limit_rps integer CHECK (rate_limit_rps > 0);
ALTER TABLE tenants ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst > 0);

-- A plan change reaches every instance like any other catalog change (the limits are cached
-- with the tenant records).
CREATE FUNCTION platform_plans_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('platform_catalog', '*');
    RETURN NULL;
END $$;
CREATE TRIGGER platform_plans_changed AFTER INSERT OR UPDATE OR DELETE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION platform_plans_changed();

CREATE TABLE admin_audit_events (
    seq          bigint PRIMARY KEY,
    id           uuid NOT NULL,
    occurred_at  timestamptz NOT NULL,
    tenant_id    uuid,
    actor_type   text NOT NULL,
    actor_id     text,
    action       text NOT NULL,
    target_type  text,
    target_id    text,
    outcome      text NOT NULL CHECK (outcome IN ('success', 'denied', 'failure')),
    route        text,
    client_ip    text,
    user_agent   text,
    request_id   text,
    summary      jsonb NOT NULL DEFAULT '{}',
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX admin_audit_events_tenant ON admin_audit_events (tenant_id, seq);

CREATE TABLE admin_audit_chain (
    only_row         boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq              bigint NOT NULL,
    hash             text NOT NULL,
    checkpoint_seq   bigint NOT NULL DEFAULT 0,
    checkpoint_hash  text NOT NULL
);
INSERT INTO admin_audit_chain (seq, hash, checkpoint_hash) VALUES (0, repeat('0', 64), repeat('0', 64));

CREATE FUNCTION platform_audit_field(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN v IS NULL THEN '-' ELSE octet_length(v)::text || ':' || v END $$;

-- Same layout as the tenant chain's hash (tenant_id first, then seq, id, time, ...).
CREATE FUNCTION platform_admin_audit_hash(e admin_audit_events) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT encode(sha256(convert_to(concat_ws('|',
        e.prev_hash,
        platform_audit_field(e.tenant_id::text),
        platform_audit_field(e.seq::text),
        platform_audit_field(e.id::text),
        platform_audit_field((extract(epoch FROM e.occurred_at) * 1000000)::bigint::text),
        platform_audit_field(e.actor_type),
        platform_audit_field(e.actor_id),
        platform_audit_field(e.action),
        platform_audit_field(e.target_type),
        platform_audit_field(e.target_id),
        platform_audit_field(e.outcome),
        platform_audit_field(e.route),
        platform_audit_field(e.client_ip),
        platform_audit_field(e.user_agent),
        platform_audit_field(e.request_id),
        platform_audit_field(e.summary::text)), 'UTF8')), 'hex') $$;

CREATE FUNCTION platform_audit_context() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT COALESCE(convert_from(decode(NULLIF(current_setting('app.audit', true), ''), 'base64'), 'UTF8')::jsonb, '{}'::jsonb) $$;

CREATE FUNCTION platform_uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE
    AS $$ SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid $$;

CREATE FUNCTION platform_admin_audit_append(
    p_tenant uuid, p_action text, p_target_type text, p_target_id text, p_outcome text, p_summary jsonb
) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    ctx jsonb := platform_audit_context();
    head admin_audit_chain;
    e admin_audit_events;
BEGIN
    SELECT * INTO head FROM admin_audit_chain FOR UPDATE;
    e.seq := head.seq + 1;
    e.id := platform_uuid_v7();
    e.occurred_at := date_trunc('microseconds', clock_timestamp());
    e.tenant_id := p_tenant;
    e.actor_type := COALESCE(ctx->>'actor_type', 'system');
    e.actor_id := ctx->>'actor_id';
    e.action := p_action;
    e.target_type := p_target_type;
    e.target_id := p_target_id;
    e.outcome := p_outcome;
    e.route := ctx->>'route';
    e.client_ip := ctx->>'client_ip';
    e.user_agent := left(ctx->>'user_agent', 512);
    e.request_id := ctx->>'request_id';
    e.summary := COALESCE(p_summary, '{}'::jsonb);
    e.prev_hash := head.hash;
    e.hash := platform_admin_audit_hash(e);
    INSERT INTO admin_audit_events SELECT e.*;
    UPDATE admin_audit_chain SET seq = e.seq, hash = e.hash;
    RETURN e.seq;
END $$;

-- Row trigger: entity, target columns, ignored columns, shown columns, tenant column.
CREATE FUNCTION platform_admin_audit_row() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    r jsonb;
    o jsonb;
    changed text[];
    ignored text[] := string_to_array(TG_ARGV[2], ',');
    shown text[] := string_to_array(TG_ARGV[3], ',');
    target text;
    summary jsonb := '{}';
BEGIN
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    IF TG_OP = 'UPDATE' THEN
        o := to_jsonb(OLD);
        SELECT array_agg(n.key ORDER BY n.key) INTO changed
            FROM jsonb_each(r) n
            WHERE n.value IS DISTINCT FROM o->n.key AND NOT (n.key = ANY (ignored));
        IF changed IS NULL THEN
            RETURN NULL;
        END IF;
        summary := jsonb_build_object('changed', to_jsonb(changed));
    END IF;
    SELECT string_agg(r->>c, '/') INTO target FROM unnest(string_to_array(TG_ARGV[1], ',')) c;
    SELECT summary || COALESCE(jsonb_object_agg(c, r->c), '{}') INTO summary
        FROM unnest(shown) c WHERE r ? c AND (TG_OP <> 'UPDATE' OR c = ANY (changed));
    PERFORM platform_admin_audit_append(
        CASE WHEN TG_ARGV[4] = '' THEN NULL ELSE (r->>TG_ARGV[4])::uuid END,
        TG_ARGV[0] || '.' || CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END,
        TG_ARGV[0], target, 'success', summary);
    RETURN NULL;
END $$;

CREATE FUNCTION platform_admin_audit_attach(tbl regclass, entity text, target text, ignored text, shown text, tenant text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TRIGGER platform_audit AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION platform_admin_audit_row(%L, %L, %L, %L, %L)',
        tbl, entity, target, ignored, shown, tenant);
END $$;

-- Never the sealed columns' values (they appear by name only when they change).
SELECT platform_admin_audit_attach('tenants', 'tenant', 'id', 'updated_at,epoch',
    'slug,plan,status,placement,db_name,signup,mfa_required,rate_limit_rps,rate_limit_burst', 'id');
SELECT platform_admin_audit_attach('tenant_domains', 'domain', 'domain', '', 'domain', 'tenant_id');
SELECT platform_admin_audit_attach('db_servers', 'db_server', 'id', '', 'name,host,port,connection_budget', '');
SELECT platform_admin_audit_attach('operations', 'operation', 'id',
    'progress,lease_owner,lease_until,updated_at,step,target_url_sealed', 'kind,state,error,cancel_requested', 'tenant_id');
SELECT platform_admin_audit_attach('jwt_signing_keys', 'jwt_signing_key', 'kid', '', 'alg,retired_at', '');
SELECT platform_admin_audit_attach('plans', 'plan', 'name', 'updated_at',
    'requests_per_second,burst,audit_retention_days', '');

CREATE FUNCTION platform_audit_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF current_setting('platform.audit_erase', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are immutable (% refused)', TG_OP USING ERRCODE = '42501';
END $$;
CREATE TRIGGER platform_audit_immutable BEFORE UPDATE OR DELETE ON admin_audit_events
    FOR EACH ROW EXECUTE FUNCTION platform_audit_immutable();
CREATE TRIGGER platform_audit_immutable_truncate BEFORE TRUNCATE ON admin_audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION platform_audit_immutable();
