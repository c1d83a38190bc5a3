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
