-- Billing, second part (issue 19): the standing cached on the request path, reconciliation as a
-- schedule, scheduled plan changes applied at their date.

-- Every instance caches each tenant's billing account for the request path (a suspended tenant's
-- reads are refused too, so it is asked on every request). Any change of an account publishes
-- the tenant on the catalog channel, so every instance drops its copy within about a second.
CREATE FUNCTION platform_billing_account_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('platform_catalog', COALESCE(NEW.tenant_id, OLD.tenant_id)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER platform_billing_account_changed AFTER INSERT OR UPDATE OR DELETE ON billing_accounts
    FOR EACH ROW EXECUTE FUNCTION platform_billing_account_changed();

-- Reconciliation with Stripe's event list, hourly. A schedule fans out one job per tenant; the
-- first of a slot's jobs to claim this row lists the events created since the last run's start
-- (the watermark) and applies the missed ones; the others find the row claimed or recently run
-- and do nothing. The claim is a lease (a crashed run frees it), and the watermark moves only
-- after a successful run, so a failed one is retried from the same point.
CREATE TABLE billing_reconciliation (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    claimed_by     uuid,
    claimed_until  timestamptz NOT NULL DEFAULT '-infinity',
    -- Unix seconds: the start of the last successful run.
    watermark      bigint,
    last_run_at    timestamptz,
    last_listed    integer,
    last_applied   integer
);
INSERT INTO billing_reconciliation DEFAULT VALUES;

-- `billing.period_end` is also enqueued for the date of each scheduled downgrade; the schedule
-- catches up any whose job was lost.
INSERT INTO job_schedules (name, interval_seconds) VALUES
    ('billing.reconcile', 3600),
    ('billing.period_end', 3600);
