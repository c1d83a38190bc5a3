-- Jobs throughput (issue 16), part 2: the claim keeps a cached plan, and the enqueue's fence
-- check costs less.
--
-- The claim was one statement sent as a named prepared statement. PostgreSQL gave it a custom
-- plan on every call (a generic plan, costed with `LIMIT $3` as 10% of the rows and with
-- unknown kind arrays, never looked cheaper than a custom one): 0.25 to 0.4 ms of planning per claim,
-- more than its execution. Here the claim is a function whose statements keep generic plans,
-- made once per connection (`plan_cache_mode = force_generic_plan`). A generic plan is kept
-- whatever the table becomes, so each statement is written, and the planner's choices pinned,
-- so that the plan is the right one at any size (a plan made on a near-empty table is the
-- danger: measured at 20,000 jobs, 14 ms per claim for an update that read the tenant's every
-- row, 23 ms for a sequential scan and sort of every due job, against 0.05 ms in index order):
--
-- 1. The pick: due jobs and orphans, each in its own partial index's order (`jobs_due`:
--    priority, due time; `jobs_leased`: lease end), `FOR UPDATE SKIP LOCKED`, the limit
--    stopping each scan; then the best of both. Index scans only (`enable_seqscan`,
--    `enable_bitmapscan` off), so the partial indexes give the order.
-- 2. The update of the picked rows by their row addresses (`ctid`), which the pick's locks
--    keep stable until the transaction ends: a TID scan, the only plan left enabled for it
--    (index scans off for that statement), reads exactly the picked rows at any size.
-- 3. For a claim that came back short, the look-ahead: when the tenant's next job of these
--    kinds is due (pending or retrying jobs' due times, running jobs' lease ends, including the
--    leases just taken, which this statement sees), through the same partial indexes (the
--    smallest that hold those rows, so the ones a plan made at any size picks; the due times
--    are sorted, no index orders them across priorities). Planned per call it cost 0.5 to 0.6 ms
--    of planning per short claim (measured in `bench jobs --pg-stats`).
--
-- `jit` is off: a path the settings disable is costed at 10^10, which would make PostgreSQL
-- compile any plan that still contains one (measured: 0.5 s per call). The settings end with
-- the function. Paused kinds are left out by the caller (it passes only the kinds to claim).
-- Guarantees are the statement's: RLS (the function runs as its caller), lease tokens,
-- priorities, orphans, the move fence (V20's statement trigger on the update), `SKIP LOCKED`.
CREATE FUNCTION platform_jobs_claim(claim_kinds text[], claim_leases float8[], claim_limit integer)
    RETURNS TABLE (id uuid, kind text, payload jsonb, payload_sealed bytea, attempts integer,
                   max_attempts integer, lease_token uuid, expires_at timestamptz,
                   lease_until timestamptz)
    LANGUAGE plpgsql VOLATILE
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET jit = off
    AS $$
#variable_conflict use_column
DECLARE
    picked tid[];
BEGIN
    -- A row locked by one side and not taken stays locked only until the claim's transaction
    -- (one statement) ends.
    WITH due AS (
            SELECT ctid, priority, run_at FROM public.jobs
            WHERE state IN ('pending', 'retrying') AND run_at <= now()
              AND kind = ANY(claim_kinds)
            ORDER BY priority DESC, run_at
            LIMIT claim_limit
            FOR UPDATE SKIP LOCKED),
         orphaned AS (
            SELECT ctid, priority, run_at FROM public.jobs
            WHERE state = 'running' AND lease_until <= now() AND kind = ANY(claim_kinds)
            ORDER BY lease_until
            LIMIT claim_limit
            FOR UPDATE SKIP LOCKED)
    SELECT array_agg(c.ctid) INTO picked FROM (
        SELECT * FROM due UNION ALL SELECT * FROM orphaned
        ORDER BY priority DESC, run_at
        LIMIT claim_limit) c;
    IF picked IS NOT NULL THEN
        PERFORM set_config('enable_indexscan', 'off', true);
        RETURN QUERY
        UPDATE public.jobs j SET state = 'running', attempts = j.attempts + 1,
               lease_token = gen_random_uuid(),
               lease_until = now() + make_interval(
                   secs => claim_leases[array_position(claim_kinds, j.kind)])
        WHERE j.ctid = ANY(picked)
        RETURNING j.id, j.kind, j.payload, j.payload_sealed, j.attempts, j.max_attempts,
                  j.lease_token, j.expires_at, j.lease_until;
        PERFORM set_config('enable_indexscan', 'on', true);
    END IF;
    IF coalesce(cardinality(picked), 0) < claim_limit THEN
        -- A short claim's summary row (no id).
        RETURN QUERY
        SELECT NULL::uuid, NULL::text, NULL::jsonb, NULL::bytea, NULL::integer, NULL::integer,
               NULL::uuid, NULL::timestamptz, min(d.at) FROM (
            (SELECT run_at AS at FROM public.jobs
             WHERE state IN ('pending', 'retrying') AND kind = ANY(claim_kinds)
             ORDER BY run_at LIMIT 1)
            UNION ALL
            (SELECT lease_until FROM public.jobs
             WHERE state = 'running' AND kind = ANY(claim_kinds)
             ORDER BY lease_until LIMIT 1)) d;
    END IF;
END $$;
REVOKE ALL ON FUNCTION platform_jobs_claim(text[], float8[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_jobs_claim(text[], float8[], integer) TO platform_app;

-- The enqueue's fence check (V3's guarantee, unchanged: a fenced tenant's job insert fails with
-- TF001, and the fencing transaction waits for every insert that passed the check). V3's
-- function is `SECURITY DEFINER` with `SET search_path`, which every call pays for (a nested
-- GUC level, the search path set, then restored and looked up again). This one runs as the
-- caller: the caller can insert only its own tenant's rows (the RLS `WITH CHECK` on `jobs`,
-- checked right after this trigger), and RLS on `tenant_fences` shows it exactly that tenant's
-- fence; a role that bypasses RLS sees every fence. Names are schema-qualified instead of a
-- pinned search path. The lock, then the fence read by a statement of its own (so with a
-- snapshot taken once the lock is held), as in V3.
CREATE FUNCTION platform_refuse_fenced_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(2037, hashtext(NEW.tenant_id::text));
    IF EXISTS (SELECT FROM public.tenant_fences f WHERE f.tenant_id = NEW.tenant_id) THEN
        RAISE EXCEPTION 'tenant % is fenced (being moved)', NEW.tenant_id USING ERRCODE = 'TF001';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION platform_refuse_fenced_insert() FROM PUBLIC;

DROP TRIGGER platform_fence ON jobs;
CREATE TRIGGER platform_fence BEFORE INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION platform_refuse_fenced_insert();
