-- Run once per database as a PostgreSQL superuser (or the database owner), before setup.sh.
-- Idempotent. Vault's dynamic users join one of two group roles:
--   app_owner  owns the schema; migration users act as it (ALTER ROLE ... SET role), so
--              every object belongs to app_owner and DROP ROLE of a migration user works.
--   app_rw     reads and writes rows of app_owner's tables; application users join it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_owner') THEN
    CREATE ROLE app_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_rw') THEN
    CREATE ROLE app_rw NOLOGIN;
  END IF;
  -- The user Vault connects as: creates and drops the dynamic users.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vault_admin') THEN
    CREATE ROLE vault_admin LOGIN CREATEROLE;
  END IF;
  -- vault_admin grants CONNECT to each user it creates.
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO app_owner, app_rw', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO vault_admin WITH GRANT OPTION',
                 current_database());
END
$$;

GRANT USAGE, CREATE ON SCHEMA public TO app_owner;
GRANT USAGE ON SCHEMA public TO app_rw;
-- Tables and sequences app_owner creates (through migration users) are usable by app_rw.
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_rw;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO app_rw;
-- PostgreSQL 16+: a CREATEROLE user may only grant membership in roles it has ADMIN on.
GRANT app_owner, app_rw TO vault_admin WITH ADMIN OPTION;
-- Revocation ends the sessions of the user being dropped.
GRANT pg_signal_backend TO vault_admin;
-- Then set its password (psql): \password vault_admin   -- and hand it to setup.sh once.
