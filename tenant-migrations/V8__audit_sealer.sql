-- Audit write path without per-tenant serialisation (issue 15, part 1).
--
-- Before: every audited row took the tenant's chain-head row lock (held to commit), read the
-- newest event, hashed in PL/pgSQL and converted whole rows with to_jsonb, so one tenant's
-- writers queued on each other and an audited insert cost PostgreSQL ~10x the bare insert.
--
-- Now the writing transaction only appends the event row, unlinked (seq, prev_hash, hash NULL):
-- no lock, no hash, one INSERT ... SELECT per statement from the transition table (INSERT and
-- DELETE; UPDATE stays per row, comparing named columns), with column lists generated per table
-- instead of to_jsonb of whole rows. Linking happens after commit: the sealer (audit::sealer, in
-- Rust) reads a tenant's committed unlinked events, computes the SHA-256 chain (the formula of
-- V4, unchanged) and calls platform_audit_link, which checks the head it started from, assigns
-- per-tenant seq numbers, stores the links and moves the head once per batch. MVCC alone keeps
-- uncommitted events out of a batch, and the partial index on unlinked events (not a high-water
-- mark) finds a late committer's event whenever it commits, so nothing can be skipped.
--
-- Expand/contract: a V7 instance reading an unlinked event (NULL seq) through the listing would
-- fail on it; deploy the V8 code before (or with) this migration. Writes of V7 code keep working.

ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events ADD PRIMARY KEY (tenant_id, id);
CREATE UNIQUE INDEX audit_events_seq ON audit_events (tenant_id, seq);
ALTER TABLE audit_events
    ALTER COLUMN seq DROP NOT NULL,
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    ADD CONSTRAINT audit_events_linked CHECK ((seq IS NULL) = (hash IS NULL) AND (seq IS NULL) = (prev_hash IS NULL));
-- What the sealer reads: the unlinked events, per tenant, oldest first.
CREATE INDEX audit_events_unlinked ON audit_events (tenant_id, occurred_at, id) WHERE seq IS NULL;

-- The head moves with each sealed batch, not at each writer's commit.
DROP TRIGGER platform_audit_head ON audit_events;
-- No fence trigger on the audit tables' event rows: an event is written by a statement on a
-- fenced table (whose own trigger checked the fence) or by platform_audit_write (which checks it).
DROP TRIGGER platform_fence ON audit_events;

-- The append: the event row only.
CREATE OR REPLACE FUNCTION platform_audit_write(
    p_tenant uuid, p_action text, p_target_type text, p_target_id text, p_outcome text, p_summary jsonb
) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    ctx jsonb := platform_audit_context();
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'an audit event must belong to a tenant' USING ERRCODE = '42501';
    END IF;
    PERFORM pg_advisory_xact_lock_shared(2037, hashtext(p_tenant::text));
    IF EXISTS (SELECT 1 FROM tenant_fences f WHERE f.tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'tenant % is fenced (being moved)', p_tenant USING ERRCODE = 'TF001';
    END IF;
    INSERT INTO audit_events (tenant_id, id, occurred_at, actor_type, actor_id, action, target_type,
                              target_id, outcome, route, client_ip, user_agent, request_id, summary)
    VALUES (p_tenant, platform_uuid_v7(), date_trunc('microseconds', clock_timestamp()),
            COALESCE(ctx->>'actor_type', 'system'), ctx->>'actor_id', p_action, p_target_type,
            p_target_id, p_outcome, ctx->>'route', ctx->>'client_ip', left(ctx->>'user_agent', 512),
            ctx->>'request_id', COALESCE(p_summary, '{}'::jsonb));
    RETURN NULL;
END $$;

-- Links a batch: `p_ids` (unlinked events of the tenant, in chain order) get seq numbers after
-- the head's `p_head_seq` and the hashes `p_hashes` the sealer computed over them (prev_hash of
-- each is the hash before it, starting from the head's). Refused if the head moved meanwhile or an
-- event is not an unlinked event of the tenant. A wrong hash is not refused here: verification
-- recomputes every hash and reports it.
CREATE FUNCTION platform_audit_link(p_tenant uuid, p_head_seq bigint, p_ids uuid[], p_hashes text[])
    RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    head audit_chain;
    n bigint;
BEGIN
    IF p_tenant IS NULL OR (session_user = 'platform_app' AND p_tenant IS DISTINCT FROM app_tenant_id()) THEN
        RAISE EXCEPTION 'a chain may be linked only for the transaction''s tenant' USING ERRCODE = '42501';
    END IF;
    IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_hashes) OR cardinality(p_ids) = 0 THEN
        RAISE EXCEPTION 'one hash per event' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO head FROM audit_chain WHERE tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_chain (tenant_id, seq, hash, checkpoint_hash)
            VALUES (p_tenant, 0, repeat('0', 64), repeat('0', 64)) ON CONFLICT DO NOTHING;
        SELECT * INTO head FROM audit_chain WHERE tenant_id = p_tenant FOR UPDATE;
    END IF;
    IF head.seq <> p_head_seq THEN
        RAISE EXCEPTION 'the chain head moved (at %, expected %)', head.seq, p_head_seq USING ERRCODE = '40001';
    END IF;
    UPDATE audit_events e
        SET seq = head.seq + u.ord,
            prev_hash = CASE WHEN u.ord = 1 THEN head.hash ELSE p_hashes[u.ord - 1] END,
            hash = u.h
        FROM unnest(p_ids, p_hashes) WITH ORDINALITY AS u(id, h, ord)
        WHERE e.tenant_id = p_tenant AND e.id = u.id AND e.seq IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'only % of % events were unlinked events of the tenant', n, cardinality(p_ids)
            USING ERRCODE = '40001';
    END IF;
    UPDATE audit_chain SET seq = head.seq + n, hash = p_hashes[n] WHERE tenant_id = p_tenant;
    RETURN head.seq + n;
END $$;
REVOKE ALL ON FUNCTION platform_audit_link(uuid, bigint, uuid[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_audit_link(uuid, bigint, uuid[], text[]) TO platform_app;

-- The tenants of this database with unlinked events (the sealer's slow sweep of a shared
-- database, one query for all its tenants).
CREATE FUNCTION platform_audit_unlinked_tenants() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT DISTINCT tenant_id FROM audit_events WHERE seq IS NULL $$;
REVOKE ALL ON FUNCTION platform_audit_unlinked_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_audit_unlinked_tenants() TO platform_app;

-- Immutability: as before, except linking (an unlinked event getting its seq and hashes, every
-- other column unchanged), which destroys no evidence.
CREATE OR REPLACE FUNCTION platform_audit_immutable() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (OLD.tenant_id, OLD.id, OLD.occurred_at, OLD.actor_type, OLD.actor_id, OLD.action,
            OLD.target_type, OLD.target_id, OLD.outcome, OLD.route, OLD.client_ip, OLD.user_agent,
            OLD.request_id, OLD.summary)
           IS NOT DISTINCT FROM
           (NEW.tenant_id, NEW.id, NEW.occurred_at, NEW.actor_type, NEW.actor_id, NEW.action,
            NEW.target_type, NEW.target_id, NEW.outcome, NEW.route, NEW.client_ip, NEW.user_agent,
            NEW.request_id, NEW.summary) THEN
        RETURN NEW;
    END IF;
    IF platform_audit_erasing() THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are immutable (% refused)', TG_OP USING ERRCODE = '42501';
END $$;

-- Attaching the audit triggers to a table (same signature as V4, so later migrations keep
-- calling it): generates, for this table, statement-level INSERT and DELETE triggers over the
-- transition table and a row-level UPDATE trigger, each naming its columns (no to_jsonb of whole
-- rows) and reading the request context once per statement.
CREATE OR REPLACE FUNCTION platform_audit_attach(tbl regclass, entity text, target text, ignored text, shown text) RETURNS void
    LANGUAGE plpgsql AS $gen$
DECLARE
    rel text := (SELECT c.relname FROM pg_class c WHERE c.oid = tbl);
    cols text[];
    targets text[] := string_to_array(target, ',');
    shown_cols text[];
    ign text[] := COALESCE(string_to_array(NULLIF(ignored, ''), ','), '{}');
    fn text;
    target_expr text;
    summary_expr text;
    action_expr text;
    outcome_expr text;
    changed_expr text;
    changed_shown text;
    c text;
    -- The erase capability is looked up only when the setting asks for it (AND stops at the first
    -- false): the lookup costs ~0.2 ms, more than the rest of the trigger.
    head text := 'IF COALESCE(current_setting(''platform.audit_erase'', true), '''') = ''on'' AND platform_audit_erasing() THEN RETURN NULL; END IF; ctx := platform_audit_context();';
    ins text := 'INSERT INTO audit_events (tenant_id, id, occurred_at, actor_type, actor_id, action, target_type, target_id, outcome, route, client_ip, user_agent, request_id, summary) ';
    ctx_cols text := 'COALESCE(ctx->>''actor_type'', ''system''), ctx->>''actor_id''';
    req_cols text := 'ctx->>''route'', ctx->>''client_ip'', left(ctx->>''user_agent'', 512), ctx->>''request_id''';
BEGIN
    SELECT array_agg(a.attname::text ORDER BY a.attname) INTO cols
        FROM pg_attribute a WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT COALESCE(array_agg(s), '{}') INTO shown_cols
        FROM unnest(COALESCE(string_to_array(NULLIF(shown, ''), ','), '{}')) s WHERE s = ANY (cols);
    -- Expressions over a row alias `a` (a transition-table row, or NEW/OLD).
    SELECT CASE WHEN count(*) = 1 THEN format('(%s)::text', min('a.' || quote_ident(t)))
                ELSE format('NULLIF(concat_ws(''/'', %s), '''')', string_agg(format('a.%I::text', t), ', ' ORDER BY o)) END
        INTO target_expr FROM unnest(targets) WITH ORDINALITY AS x(t, o);
    IF cardinality(shown_cols) = 0 THEN
        summary_expr := '''{}''::jsonb';
    ELSE
        SELECT format('jsonb_build_object(%s)', string_agg(format('%L, a.%I', s, s), ', '))
            INTO summary_expr FROM unnest(shown_cols) s;
    END IF;
    IF entity = 'security_event' THEN
        action_expr := '''security.'' || a.kind';
        outcome_expr := '''denied''';
        target_expr := 'COALESCE(a.session_id::text, a.user_id::text)';
    ELSE
        action_expr := NULL;
        outcome_expr := '''success''';
    END IF;

    -- Whatever triggers a previous version attached.
    EXECUTE format('DROP TRIGGER IF EXISTS platform_audit ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS platform_audit_ins ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS platform_audit_del ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS platform_audit_upd ON %s', tbl);

    -- INSERT and DELETE: one INSERT ... SELECT over the statement's rows.
    FOREACH c IN ARRAY ARRAY['ins', 'del'] LOOP
        fn := format('platform_audit_%s_%s', c, rel);
        EXECUTE format($f$
            CREATE OR REPLACE FUNCTION %I() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
                AS $b$
            DECLARE ctx jsonb;
            BEGIN
                %s
                %s SELECT a.tenant_id, platform_uuid_v7(), date_trunc('microseconds', clock_timestamp()), %s,
                    %s, %L, %s, %s, %s, %s FROM audit_rows a;
                RETURN NULL;
            END $b$$f$,
            fn, head, ins, ctx_cols,
            COALESCE(action_expr, quote_literal(entity || CASE c WHEN 'ins' THEN '.created' ELSE '.deleted' END)),
            entity, target_expr, outcome_expr, req_cols, summary_expr);
        EXECUTE format('REVOKE ALL ON FUNCTION %I() FROM PUBLIC', fn);
        EXECUTE format(
            'CREATE TRIGGER platform_audit_%s AFTER %s ON %s REFERENCING %s TABLE AS audit_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
            c, CASE c WHEN 'ins' THEN 'INSERT' ELSE 'DELETE' END, tbl,
            CASE c WHEN 'ins' THEN 'NEW' ELSE 'OLD' END, fn);
    END LOOP;

    -- UPDATE: per row, the changed columns by name (sorted), ignored ones left out.
    SELECT format('array_remove(ARRAY[%s]::text[], NULL)', string_agg(
               format('CASE WHEN o.%1$I%2$s IS DISTINCT FROM a.%1$I%2$s THEN %3$L END', col,
                      CASE WHEN t.typname = 'json' THEN '::jsonb' ELSE '' END, col), ', ' ORDER BY col))
        INTO changed_expr
        FROM (SELECT a.attname::text AS col, a.atttypid FROM pg_attribute a
              WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped AND NOT (a.attname::text = ANY (ign))) x
        JOIN pg_type t ON t.oid = x.atttypid;
    SELECT COALESCE(string_agg(format(' || CASE WHEN %1$L = ANY (changed) THEN jsonb_build_object(%1$L, a.%1$I) ELSE ''{}''::jsonb END', s), ''), '')
        INTO changed_shown FROM unnest(shown_cols) s;
    fn := format('platform_audit_upd_%s', rel);
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION %I() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
            AS $b$
        DECLARE
            ctx jsonb;
            a %s := NEW;
            o %s := OLD;
            changed text[];
        BEGIN
            IF COALESCE(current_setting('platform.audit_erase', true), '') = 'on' AND platform_audit_erasing() THEN RETURN NULL; END IF;
            changed := %s;
            IF cardinality(changed) = 0 THEN RETURN NULL; END IF;
            ctx := platform_audit_context();
            %s VALUES (a.tenant_id, platform_uuid_v7(), date_trunc('microseconds', clock_timestamp()), %s,
                %s, %L, %s, %s, %s, jsonb_build_object('changed', to_jsonb(changed))%s);
            RETURN NULL;
        END $b$$f$,
        fn, tbl, tbl, changed_expr, ins, ctx_cols,
        COALESCE(action_expr, quote_literal(entity || '.updated')),
        entity, target_expr, outcome_expr, req_cols, changed_shown);
    EXECUTE format('REVOKE ALL ON FUNCTION %I() FROM PUBLIC', fn);
    EXECUTE format(
        'CREATE TRIGGER platform_audit_upd AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %I()', tbl, fn);
END $gen$;

-- Re-attach every audited table (V4, V5 and any later migration's) with the generated triggers,
-- from the arguments its V4-style row trigger was created with.
DO $$
DECLARE
    r record;
    args text[];
BEGIN
    FOR r IN
        SELECT t.tgrelid::regclass AS tbl, t.tgnargs, t.tgargs
        FROM pg_trigger t
        WHERE t.tgname = 'platform_audit' AND NOT t.tgisinternal
    LOOP
        args := string_to_array(encode(r.tgargs, 'escape'), '\000');
        PERFORM platform_audit_attach(r.tbl, args[1], args[2], args[3], args[4]);
    END LOOP;
END $$;
