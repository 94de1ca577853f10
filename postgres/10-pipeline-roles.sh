#!/bin/bash
# The PostgreSQL roles the producer and the consumer connect as, for
# docker-compose.yml: mounted into /docker-entrypoint-initdb.d, so the
# postgres image runs it once, when its volume is first initialised (as
# POSTGRES_USER, the owner, which the `migrate` service runs as). The
# migrate service then grants each role exactly what its binary needs
# (shared/src/roles.rs): table privileges only, no DDL.
#
# Safe to run again, e.g. on a volume made before these roles existed, or
# to apply changed passwords:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-pipeline-roles.sh
#
# (Sourced by the image's entrypoint: no `set` here, which would change the
# entrypoint's own shell; psql stops at the first error and fails the init.)
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v producer_password="${POSTGRES_PRODUCER_PASSWORD:?}" \
  -v consumer_password="${POSTGRES_CONSUMER_PASSWORD:?}" <<'SQL'
SELECT 'CREATE ROLE pipeline_producer' WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = 'pipeline_producer') \gexec
SELECT 'CREATE ROLE pipeline_consumer' WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = 'pipeline_consumer') \gexec
ALTER ROLE pipeline_producer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'producer_password';
ALTER ROLE pipeline_consumer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'consumer_password';
SQL
