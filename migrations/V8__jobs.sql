-- Background jobs, control-plane side (issue 16): operators' kind pauses, the schedules of
-- platform jobs (one row per schedule; the instance whose UPDATE moves `next_run_at` runs that
-- slot, so a slot runs once across instances), and each plan's share of the workers.
CREATE TABLE job_kind_pauses (
    kind       text PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE job_schedules (
    name              text PRIMARY KEY,
    interval_seconds  integer NOT NULL CHECK (interval_seconds > 0),
    next_run_at       timestamptz NOT NULL DEFAULT now(),
    last_run_at       timestamptz,
    last_error        text
);
INSERT INTO job_schedules (name, interval_seconds) VALUES
    ('tokens.cleanup', 3600),
    ('jobs.retention', 86400);

ALTER TABLE plans ADD COLUMN job_weight integer NOT NULL DEFAULT 1 CHECK (job_weight > 0);
UPDATE plans SET job_weight = CASE name WHEN 'pro' THEN 4 WHEN 'enterprise' THEN 16 ELSE 1 END;

-- Operators' pauses are in their audit trail (`job_kind_pause.created` / `.deleted`). Their retries
-- and discards of a tenant's job are appended there by the code (`job.retried`, `job.discarded`):
-- the job row lives in the tenant's database.
SELECT platform_admin_audit_attach('job_kind_pauses', 'job_kind_pause', 'kind', '', 'kind', '');
