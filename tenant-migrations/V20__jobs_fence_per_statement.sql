-- Jobs throughput (issue 16): the move fence on `jobs` is checked once per UPDATE or DELETE
-- statement instead of once per row. A claim and a batch completion each change up to a batch
-- of rows in one statement, and the row trigger (V3's `platform_refuse_fenced`: a SECURITY
-- DEFINER call, the tenant's shared advisory lock, a look-up in `tenant_fences`) ran for every
-- one of them; a retention purge, for every row it deletes.
--
-- The guarantee is V3's: a statement that changes a fenced tenant's jobs fails with TF001 and
-- changes nothing (its transaction is aborted), and the fencing transaction, which takes the
-- tenant's advisory lock exclusively, waits for every transaction that passed the check to end.
-- Here the check runs after the statement's rows are written and before it returns (an AFTER
-- statement trigger over the statement's transition tables): the shared lock is taken, then the
-- fence is read with a snapshot taken after the lock (a statement of its own), for every tenant
-- whose rows the statement changed (old and new rows, so a change of `tenant_id` is checked on
-- both sides). A statement that changed no row checks nothing, as the row trigger did not run.
-- INSERT keeps the row trigger: an enqueue writes one row, and a BEFORE row trigger is the
-- cheaper of the two for one row.
CREATE FUNCTION platform_refuse_fenced_rows() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE t uuid;
BEGIN
    -- The locks in one order (by tenant id), so two statements over the same tenants never wait
    -- on each other in a cycle behind a fencing transaction; then the fences, read by a
    -- statement of its own, so with a snapshot taken once the locks are held.
    IF TG_OP = 'UPDATE' THEN
        PERFORM pg_advisory_xact_lock_shared(2037, hashtext(c.tenant_id::text))
        FROM (SELECT tenant_id FROM changed_old UNION SELECT tenant_id FROM changed_new
              ORDER BY 1) c;
        SELECT f.tenant_id INTO t FROM tenant_fences f
        WHERE f.tenant_id IN (SELECT tenant_id FROM changed_old
                              UNION ALL SELECT tenant_id FROM changed_new)
        LIMIT 1;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(2037, hashtext(c.tenant_id::text))
        FROM (SELECT DISTINCT tenant_id FROM changed_old ORDER BY 1) c;
        SELECT f.tenant_id INTO t FROM tenant_fences f
        WHERE f.tenant_id IN (SELECT tenant_id FROM changed_old)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'tenant % is fenced (being moved)', t USING ERRCODE = 'TF001';
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION platform_refuse_fenced_rows() FROM PUBLIC;

DROP TRIGGER platform_fence ON jobs;
CREATE TRIGGER platform_fence BEFORE INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION platform_refuse_fenced();
-- PostgreSQL allows transition tables only on a trigger of one event: one trigger each.
CREATE TRIGGER platform_fence_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION platform_refuse_fenced_rows();
CREATE TRIGGER platform_fence_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION platform_refuse_fenced_rows();
