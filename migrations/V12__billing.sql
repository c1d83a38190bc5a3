-- Billing with Stripe (issue 19). Billing state is what the platform knows about a tenant as its
-- customer, so it lives here, in the control plane (DESIGN.md's placement rule): the webhook
-- endpoint has no tenant host, finds the tenant by its Stripe customer, and records the event id
-- in the same transaction as the state change it causes. What a tenant owns (its usage events,
-- the dunning notices sent to it, the email jobs) lives in its own database (tenant V13).

-- Plans map to Stripe prices (monthly and yearly); `rank` orders them (a higher rank is an
-- upgrade); grace and restriction periods are per plan; `seats` bounds the member count (NULL:
-- unbounded).
ALTER TABLE plans ADD COLUMN stripe_price_monthly text UNIQUE;
ALTER TABLE plans ADD COLUMN stripe_price_yearly text UNIQUE;
ALTER TABLE plans ADD COLUMN rank integer NOT NULL DEFAULT 0;
ALTER TABLE plans ADD COLUMN grace_days integer NOT NULL DEFAULT 7 CHECK (grace_days >= 0);
ALTER TABLE plans ADD COLUMN restriction_days integer NOT NULL DEFAULT 14 CHECK (restriction_days >= 0);
ALTER TABLE plans ADD COLUMN seats integer CHECK (seats > 0);
UPDATE plans SET rank = CASE name WHEN 'free' THEN 0 WHEN 'pro' THEN 10 ELSE 20 END,
                 seats = CASE name WHEN 'free' THEN 5 ELSE NULL END;

-- One billing account per tenant: its Stripe customer and the subscription state converged from
-- webhooks. `stripe_version` is the `created` time (Unix seconds) of the newest event applied;
-- an older event triggers a refetch of the object instead of overwriting newer state.
-- `plan` names a catalog plan like `tenants.plan` (no foreign key: a plan the catalog does not
-- list gets the defaults, as for rate limits). Deadlines are stored (not derived at read time from a clock in code), so an operator (or a
-- test) moves them with one UPDATE: `grace_until` ends full access while past due (writes then
-- answer 402), `suspend_at` ends read access too.
CREATE TABLE billing_accounts (
    tenant_id             uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    stripe_customer_id    text UNIQUE,
    contact_email         text,
    subscription_id       text UNIQUE,
    subscription_item_id  text,
    status                text NOT NULL DEFAULT 'none' CHECK (status IN
        ('none', 'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'unpaid',
         'canceled', 'paused', 'granted')),
    plan                  text NOT NULL DEFAULT 'free',
    billing_interval      text NOT NULL DEFAULT 'monthly' CHECK (billing_interval IN ('monthly', 'yearly')),
    current_period_end    timestamptz,
    cancel_at_period_end  boolean NOT NULL DEFAULT false,
    scheduled_plan        text,
    scheduled_at          timestamptz,
    grant_until           timestamptz,
    past_due_since        timestamptz,
    grace_until           timestamptz,
    suspend_at            timestamptz,
    amount_due            bigint,
    currency              text,
    pay_url               text,
    restored_cycle        text,
    stripe_version        bigint NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Stripe events already applied (a redelivery finds its id and changes nothing); kept 90 days
-- (Stripe retries for 3 days; reconciliation reads 30 days back).
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    created      bigint NOT NULL,
    tenant_id    uuid,
    outcome      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_created ON stripe_events (created);

-- Every transition is in the operators' audit trail (`billing_account.created` / `.updated` with
-- the changed columns and their new values).
SELECT platform_admin_audit_attach('billing_accounts', 'billing_account', 'tenant_id', 'updated_at,stripe_version',
    'status,plan,billing_interval,cancel_at_period_end,scheduled_plan,scheduled_at,grant_until,grace_until,suspend_at,current_period_end', 'tenant_id');

-- Platform schedules (fanned out to one tenant job each): dunning reminders and final notices,
-- and the usage report of the last closed period.
INSERT INTO job_schedules (name, interval_seconds) VALUES
    ('billing.dunning', 3600),
    ('billing.usage_report', 3600);
