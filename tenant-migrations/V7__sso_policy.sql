-- SSO linking policy (issue 14, hole 3): a connection may be marked as enforcing MFA at the
-- identity provider. Only then does an SSO login of a user with TOTP skip the TOTP step; off by
-- default, so an SSO login of a TOTP user goes through `/auth/mfa/verify` as a password login
-- does. Expand-only: code at V6 never reads the column and its inserts get the default.

ALTER TABLE sso_connections ADD COLUMN enforces_mfa boolean NOT NULL DEFAULT false;

-- The audit trigger shows the new setting's value (V5 listed the columns shown then).
DROP TRIGGER platform_audit ON sso_connections;
SELECT platform_audit_attach('sso_connections', 'sso_connection', 'id', 'updated_at', 'kind,name,enabled,allow_idp_initiated,default_role,enforces_mfa');
