-- Usage quotas (issue 19): how many tasks (the metered dimension, `usage_events` in the tenant's
-- database) a plan's tenants may create per period, a calendar month in UTC (the period the
-- usage report sends to Stripe). NULL: unlimited (a plan the catalog does not list has none
-- either). Seeded: free 100, pro 10000, enterprise unlimited; operators set it with
-- `PUT /admin/v1/plans/{plan}` (`tasks_per_month`). A change reaches every instance like any
-- plan change (the statement trigger of V6 notifies `*`).
ALTER TABLE plans ADD COLUMN tasks_per_month bigint CHECK (tasks_per_month >= 0);
UPDATE plans SET tasks_per_month = CASE name WHEN 'free' THEN 100 WHEN 'pro' THEN 10000 ELSE NULL END;

-- The operators' audit trail shows the new quota (and seats, V12) with the other plan values.
DROP TRIGGER platform_audit ON plans;
SELECT platform_admin_audit_attach('plans', 'plan', 'name', 'updated_at',
    'requests_per_second,burst,audit_retention_days,seats,tasks_per_month', '');
