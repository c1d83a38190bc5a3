-- Run once by the postgres image's entrypoint, as the superuser, when the `control` volume is
-- empty (mounted into /docker-entrypoint-initdb.d by docker-compose.yml).
--
-- The control plane and the shared tenant database live in two databases of this one server.
-- The platform does the rest at startup, connecting as the owner: it applies migrations/ to
-- platform_control and tenant-migrations/ to platform_shared, and it creates the data-plane
-- role platform_app (its password is derived from the master key, so it is not set here).

SELECT 'CREATE DATABASE platform_control'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'platform_control')\gexec

SELECT 'CREATE DATABASE platform_shared'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'platform_shared')\gexec
