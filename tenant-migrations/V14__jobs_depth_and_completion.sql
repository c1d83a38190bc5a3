-- Job queue depth for metrics (issue 16/21): per tenant, kind and state, the number of jobs and,
-- of those already due, the oldest due time. Read once per database by the worker's sweep (as
-- `platform_jobs_due` is), never per request; the caller keeps only the tenants placed here.
CREATE FUNCTION platform_jobs_depth()
    RETURNS TABLE (tenant_id uuid, kind text, state text, jobs bigint, oldest_due timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT tenant_id, kind, state, count(*), min(run_at) FILTER (WHERE run_at <= now())
        FROM jobs
        WHERE state IN ('pending', 'retrying', 'running', 'dead')
        GROUP BY tenant_id, kind, state
    $$;
REVOKE ALL ON FUNCTION platform_jobs_depth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_jobs_depth() TO platform_app;

-- A job's fenced completion as one statement that fails when the lease no longer holds, so the
-- worker sends it with `COMMIT` behind it in the handler's last round trip: a lost lease aborts
-- the transaction (its effects roll back) instead of needing a look at the row count first.
CREATE FUNCTION platform_job_complete(job uuid, lease uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = public
    AS $$
    BEGIN
        UPDATE jobs SET state = 'succeeded', lease_token = NULL, lease_until = NULL,
                        finished_at = now(), last_error = NULL
        WHERE id = job AND lease_token = lease AND state = 'running';
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the job''s lease was lost' USING ERRCODE = 'PJ001';
        END IF;
    END
    $$;
REVOKE ALL ON FUNCTION platform_job_complete(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION platform_job_complete(uuid, uuid) TO platform_app;
