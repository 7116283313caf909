#!/bin/sh
# One-shot: create the Temporal databases on PostgreSQL and bring both schemas up to date.
# Runs in temporalio/admin-tools (temporal-sql-tool and the schema files ship in that image).
# Safe to run again: an existing database is kept, setup-schema never lowers the version,
# and update-schema only applies versions newer than the one recorded.
set -eu

HOST=${POSTGRES_SEEDS:-postgresql}
PORT=${DB_PORT:-5432}
USER=${POSTGRES_USER:-temporal}
PLUGIN=${DB:-postgres12}
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12
export SQL_PASSWORD="${SQL_PASSWORD:-${POSTGRES_PWD:-temporal}}"

echo "Waiting for PostgreSQL at ${HOST}:${PORT}..."
attempt=0
until nc -z -w 5 "$HOST" "$PORT"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "PostgreSQL did not answer after ${attempt} attempts" >&2
    exit 1
  fi
  sleep 2
done

setup_database() {
  db=$1
  schema_dir=$2
  echo "Setting up database ${db}..."
  temporal-sql-tool --plugin "$PLUGIN" --ep "$HOST" -u "$USER" -p "$PORT" --db "$db" create
  temporal-sql-tool --plugin "$PLUGIN" --ep "$HOST" -u "$USER" -p "$PORT" --db "$db" setup-schema -v 0.0
  temporal-sql-tool --plugin "$PLUGIN" --ep "$HOST" -u "$USER" -p "$PORT" --db "$db" update-schema -d "$schema_dir"
}

setup_database "${DBNAME:-temporal}" "${SCHEMA_ROOT}/temporal/versioned"
setup_database "${VISIBILITY_DBNAME:-temporal_visibility}" "${SCHEMA_ROOT}/visibility/versioned"

echo "PostgreSQL schema setup complete"
