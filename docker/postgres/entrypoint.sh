#!/bin/sh
# The PostgreSQL image's entry point: on the first start (an empty $PGDATA), a cluster whose superuser is
# $POSTGRES_USER (wdrec) with $POSTGRES_PASSWORD, password (SCRAM) logins over TCP from anywhere on the
# Compose network, and the database $POSTGRES_DB (wdrec); then the server in the foreground.
set -eu

bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)"
user="${POSTGRES_USER:-wdrec}"
database="${POSTGRES_DB:-wdrec}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "wdrec-postgres: set POSTGRES_PASSWORD for the first start" >&2
        exit 1
    fi
    password_file="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
    "$bin/initdb" --pgdata="$PGDATA" --username="$user" --pwfile="$password_file" --encoding=UTF8 \
        --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE \"$database\"" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
