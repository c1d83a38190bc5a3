-- The tenant's audit log: an append-only, hash-chained record of every change to the tenant's
-- significant tables and of denied or failed attempts, written in the same transaction as the
-- change it records (row triggers), so a rolled-back change leaves no event and no event exists
-- without its change.
--
-- Who acted comes from the transaction's `app.audit` setting (base64 of a JSON object: actor,
-- route, client IP, user agent, request id), set with SET LOCAL by the application next to
-- `app.tenant_id`. Without it the actor is `system` (ops tools, background work).
--
-- Immutability: platform_app has SELECT only (events are appended by SECURITY DEFINER
-- functions), and a trigger refuses UPDATE, DELETE and TRUNCATE of events for every role unless
-- the transaction set `platform.audit_erase = on` AND the current role is not platform_app: the
-- controlled path used by placement cleanup, tenant purge and retention expiry (as the owner).
--
-- Hash chain, per tenant: event n stores prev_hash (the hash of event n-1, or 64 zeros) and
-- hash = hex(sha256(prev_hash || '|' || the fields, each as `<byte length>:<text>` or `-` for
-- NULL, joined by '|')), the timestamp as microseconds since the epoch. `audit_chain` holds the
-- head (last seq and hash, updated at commit), locked for the append, so appends of one tenant
-- are serialised and seq order is commit order; expiry keeps a checkpoint (last removed seq and
-- its hash).

CREATE TABLE audit_events (
    tenant_id    uuid NOT NULL,
    seq          bigint NOT NULL,
    id           uuid NOT NULL,
    occurred_at  timestamptz NOT NULL,
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
    hash         text NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_time ON audit_events (tenant_id, occurred_at);

CREATE TABLE audit_chain (
    tenant_id        uuid NOT NULL,
    seq              bigint NOT NULL,
    hash             text NOT NULL,
    checkpoint_seq   bigint NOT NULL DEFAULT 0,
    checkpoint_hash  text NOT NULL,
    PRIMARY KEY (tenant_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_events', 'audit_chain'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id())',
            t);
        EXECUTE format('REVOKE ALL ON %I FROM platform_app', t);
        EXECUTE format('GRANT SELECT ON %I TO platform_app', t);
        PERFORM platform_attach_fence(t);
    END LOOP;
END $$;

CREATE FUNCTION platform_audit_field(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN v IS NULL THEN '-' ELSE octet_length(v)::text || ':' || v END $$;

-- The hash of an event (its own `hash` column is not an input).
CREATE FUNCTION platform_audit_hash(e audit_events) RETURNS text
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

-- The request context of the transaction (`app.audit`), or an empty object.
CREATE FUNCTION platform_audit_context() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT COALESCE(convert_from(decode(NULLIF(current_setting('app.audit', true), ''), 'base64'), 'UTF8')::jsonb, '{}'::jsonb) $$;

-- A UUIDv7 (PostgreSQL 15 has no generator): millisecond time, then random bits.
CREATE FUNCTION platform_uuid_v7() RETURNS uuid
    LANGUAGE sql VOLATILE
    AS $$ SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid $$;

-- Appends one event to the tenant's chain. The tenant must be the transaction's tenant.
-- The chain head row is locked (appends of a tenant are serialised until commit) but not
-- updated per event: the previous event is found by the primary key (the newest seq), so a
-- transaction appending many events (a cascading delete) stays linear. The head row's seq and
-- hash are brought up to date once per transaction, at commit (deferred trigger below).
CREATE FUNCTION platform_audit_append(
    p_tenant uuid, p_action text, p_target_type text, p_target_id text, p_outcome text, p_summary jsonb
) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    ctx jsonb := platform_audit_context();
    head audit_chain;
    last record;
    e audit_events;
BEGIN
    -- The data-plane role may only append to its transaction's tenant (the owner is trusted).
    IF p_tenant IS NULL OR (session_user = 'platform_app' AND p_tenant IS DISTINCT FROM app_tenant_id()) THEN
        RAISE EXCEPTION 'an audit event must belong to the transaction''s tenant' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO head FROM audit_chain WHERE tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain (tenant_id, seq, hash, checkpoint_hash)
            VALUES (p_tenant, 0, repeat('0', 64), repeat('0', 64)) ON CONFLICT DO NOTHING;
        SELECT * INTO head FROM audit_chain WHERE tenant_id = p_tenant FOR UPDATE;
    END IF;
    SELECT a.seq, a.hash INTO last FROM audit_events a WHERE a.tenant_id = p_tenant ORDER BY a.seq DESC LIMIT 1;
    IF FOUND THEN
        e.seq := last.seq + 1;
        e.prev_hash := last.hash;
    ELSE
        e.seq := head.checkpoint_seq + 1;
        e.prev_hash := head.checkpoint_hash;
    END IF;
    e.tenant_id := p_tenant;
    e.id := platform_uuid_v7();
    e.occurred_at := date_trunc('microseconds', clock_timestamp());
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
    e.hash := platform_audit_hash(e);
    INSERT INTO audit_events SELECT e.*;
    RETURN e.seq;
END $$;

-- At commit, once per tenant and transaction: the head row records the newest event, so a
-- verification notices events missing at the end of the chain.
CREATE FUNCTION platform_audit_head() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    flag text := 'platform.audit_head_' || replace(NEW.tenant_id::text, '-', '');
BEGIN
    IF current_setting(flag, true) = txid_current()::text THEN
        RETURN NULL;
    END IF;
    PERFORM set_config(flag, txid_current()::text, true);
    UPDATE audit_chain c SET seq = l.seq, hash = l.hash
        FROM (SELECT a.seq, a.hash FROM audit_events a WHERE a.tenant_id = NEW.tenant_id
              ORDER BY a.seq DESC LIMIT 1) l
        WHERE c.tenant_id = NEW.tenant_id;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION platform_audit_head() FROM PUBLIC;
CREATE CONSTRAINT TRIGGER platform_audit_head AFTER INSERT ON audit_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION platform_audit_head();
REVOKE ALL ON FUNCTION platform_audit_append(uuid, text, text, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_audit_append(uuid, text, text, text, text, jsonb) TO platform_app;

-- Row trigger on audited tables. Arguments: entity name, target columns (comma-separated),
-- columns whose change alone is not worth an event, columns whose values may appear in the
-- summary (never secrets or hashes: other columns appear by name only).
CREATE FUNCTION platform_audit_row() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    r jsonb;
    o jsonb;
    changed text[];
    ignored text[] := string_to_array(TG_ARGV[2], ',');
    shown text[] := string_to_array(TG_ARGV[3], ',');
    target text;
    action text;
    outcome text := 'success';
    summary jsonb := '{}';
BEGIN
    IF current_setting('platform.audit_erase', true) = 'on' THEN
        RETURN NULL;
    END IF;
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
    IF TG_TABLE_NAME = 'security_events' THEN
        action := 'security.' || (r->>'kind');
        outcome := 'denied';
        target := COALESCE(r->>'session_id', r->>'user_id');
    ELSE
        action := TG_ARGV[0] || '.' || CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END;
    END IF;
    PERFORM platform_audit_append((r->>'tenant_id')::uuid, action, TG_ARGV[0], target, outcome, summary);
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION platform_audit_row() FROM PUBLIC;

CREATE FUNCTION platform_audit_attach(tbl regclass, entity text, target text, ignored text, shown text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TRIGGER platform_audit AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION platform_audit_row(%L, %L, %L, %L)',
        tbl, entity, target, ignored, shown);
END $$;

-- Not audited: outbox (follows its one-time token), tenant_fences (placement moves are audited
-- in the control plane). A refresh is recorded by its new token; the old token's rotation
-- columns are not worth a second event.
SELECT platform_audit_attach('refresh_tokens', 'refresh_token', 'id', 'rotated_at,replaced_by,successor_sealed', 'session_id');
SELECT platform_audit_attach('api_keys', 'api_key', 'id', '', 'name,role_id,revoked_at');
SELECT platform_audit_attach('projects', 'project', 'id', 'updated_at', '');
SELECT platform_audit_attach('tasks', 'task', 'id', 'updated_at', 'project_id,status');
SELECT platform_audit_attach('roles', 'role', 'id', '', 'name,builtin');
SELECT platform_audit_attach('role_permissions', 'role_permission', 'role_id,permission', '', 'role_id,permission');
SELECT platform_audit_attach('users', 'user', 'id', 'updated_at,totp_last_step', 'role_id,email_verified_at,totp_enabled_at');
SELECT platform_audit_attach('invitations', 'invitation', 'id', '', 'role_id,expires_at,accepted_at');
SELECT platform_audit_attach('sessions', 'session', 'id', 'last_seen_at,ip', 'user_id,revoked_at,revoked_reason');
SELECT platform_audit_attach('security_events', 'security_event', 'id', '', 'kind,user_id,session_id');
SELECT platform_audit_attach('recovery_codes', 'recovery_code', 'id', '', 'user_id,used_at');
SELECT platform_audit_attach('one_time_tokens', 'one_time_token', 'id', '', 'user_id,purpose,used_at');
SELECT platform_audit_attach('project_members', 'project_member', 'project_id,user_id', '', 'project_id,user_id,role');

-- Events are never changed or removed, except on the owner's controlled path (see the top).
CREATE FUNCTION platform_audit_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF current_setting('platform.audit_erase', true) = 'on' AND current_user <> 'platform_app' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are immutable (% refused)', TG_OP USING ERRCODE = '42501';
END $$;
CREATE TRIGGER platform_audit_immutable BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION platform_audit_immutable();
CREATE TRIGGER platform_audit_immutable_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION platform_audit_immutable();
