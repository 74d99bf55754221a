-- First start of the compose PostgreSQL: the databases the other services use.
-- (StratMaster's own schema is applied by the `migrate` service from
-- infra/postgres/migrations; Temporal's auto-setup creates temporal + temporal_visibility.)
CREATE DATABASE keycloak OWNER stratmaster;
CREATE DATABASE langfuse OWNER stratmaster;
