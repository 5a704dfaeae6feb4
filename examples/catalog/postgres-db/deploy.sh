#!/bin/sh
# postgres-db deploy (ADE custom-runner contract): a database and its owner role in the
# PostgreSQL server named by POSTGRES_ADMIN_URL, a [runner.env] variable of the service
# config, e.g. in paved.toml:
#
#   [runner.env]
#   POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
#
# The database and the role are both named env_<environment name, - as _>. Deploying again
# (an update) creates only what is missing, keeps the password (stored in ADE_STORAGE) and
# applies the connection limit of the `size` parameter (small: 10, large: 100).
#
# Optional: POSTGRES_HOST / POSTGRES_PORT, the address applications use, when it is not
# the one in POSTGRES_ADMIN_URL. Needs psql on the runner's PATH.
set -eu

fail() {
    printf 'postgres-db: %s\n' "$*" >&2
    if [ -n "${ADE_ERROR_LOG:-}" ]; then
        printf '%s\n' "$*" >>"$ADE_ERROR_LOG"
    fi
    exit 1
}

# Copies psql's errors to stderr and ADE_ERROR_LOG, then fails with its first error line
# (Paved shows the last line of ADE_ERROR_LOG as the reason of a failed operation).
psql_failed() {
    cat "$errfile" >&2
    if [ -n "${ADE_ERROR_LOG:-}" ]; then
        cat "$errfile" >>"$ADE_ERROR_LOG"
    fi
    reason=$(grep -i 'error' "$errfile" | head -n 1)
    [ -n "$reason" ] || reason=$(head -n 1 "$errfile")
    fail "$1: ${reason:-psql failed}"
}

[ -n "${ADE_ENVIRONMENT_NAME:-}" ] || fail "ADE_ENVIRONMENT_NAME is not set"
[ -n "${ADE_STORAGE:-}" ] || fail "ADE_STORAGE is not set"
[ -n "${ADE_OUTPUTS:-}" ] || fail "ADE_OUTPUTS is not set"
[ -n "${POSTGRES_ADMIN_URL:-}" ] ||
    fail "POSTGRES_ADMIN_URL is not set: add it under [runner.env] in the service config"
command -v psql >/dev/null 2>&1 || fail "psql is not on the runner's PATH ($PATH)"

# Database and role name: env_ + the environment name with - as _.
name="env_$(printf '%s' "$ADE_ENVIRONMENT_NAME" | tr '-' '_')"
case "$name" in
*[!a-z0-9_]*) fail "refusing database name '$name': only a-z, 0-9 and _ are allowed" ;;
esac
[ "${#name}" -le 60 ] || fail "refusing database name '$name': longer than 60 characters"

# The size parameter, read from the JSON text (no jq needed): small is the default.
params="${ADE_OPERATION_PARAMETERS:-}"
case "$params" in
*'"size":"large"'* | *'"size": "large"'*) connlimit=100 ;;
*) connlimit=10 ;;
esac

# The password: made once, kept in ADE_STORAGE so an update keeps it.
pwfile="$ADE_STORAGE/password"
if [ -s "$pwfile" ]; then
    password=$(cat "$pwfile")
else
    password=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    umask 077
    printf '%s\n' "$password" >"$pwfile"
fi
case "$password" in
'' | *[!0-9a-f]*) fail "the password kept in ADE_STORAGE is not 32 hex digits; delete and deploy again" ;;
esac
[ "${#password}" -eq 32 ] || fail "the password kept in ADE_STORAGE is not 32 hex digits"

# Where applications connect: POSTGRES_HOST/POSTGRES_PORT, else the admin URL's host:port.
hostport=${POSTGRES_ADMIN_URL#*://}
hostport=${hostport%%/*}
hostport=${hostport%%\?*}
hostport=${hostport##*@}
case "$hostport" in
\[*\]:*) url_host=${hostport%:*} url_port=${hostport##*:} ;;
*:*) url_host=${hostport%%:*} url_port=${hostport#*:} ;;
*) url_host=$hostport url_port=5432 ;;
esac
host=${POSTGRES_HOST:-${url_host:-localhost}}
port=${POSTGRES_PORT:-${url_port:-5432}}
case "$port" in
'' | *[!0-9]*) fail "bad PostgreSQL port '$port'" ;;
esac
case "$host" in
*[!A-Za-z0-9.:_\[\]-]*) fail "bad PostgreSQL host '$host'" ;;
esac

errfile=$(mktemp)
trap 'rm -f "$errfile"' EXIT

# Names and values travel as psql variables (quoted by psql as :"name" and :'value'), never
# pasted into SQL. The password goes on stdin (\set), not on the command line where other
# users could see it in the process list; it is 32 hex digits, checked above.
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
if ! psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_ADMIN_URL" \
    -v name="$name" -v connlimit="$connlimit" 2>"$errfile" <<EOF; then
\\set pw '$password'
-- The role first: the database is owned by it.
SELECT format('CREATE ROLE %I LOGIN', :'name')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'name') \\gexec
ALTER ROLE :"name" WITH LOGIN PASSWORD :'pw' CONNECTION LIMIT :connlimit;
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \\gexec
-- Only the owner (and superusers) may connect: other environments' roles may not.
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
EOF
    psql_failed "could not create database $name"
fi
cat "$errfile" >&2

echo "database $name ready on $host:$port (connection limit $connlimit)"

cat >"$ADE_OUTPUTS" <<EOF
{"outputs": {
  "host": {"type": "string", "value": "$host", "sensitive": false},
  "port": {"type": "string", "value": "$port", "sensitive": false},
  "database": {"type": "string", "value": "$name", "sensitive": false},
  "user": {"type": "string", "value": "$name", "sensitive": false},
  "password": {"type": "string", "value": "$password", "sensitive": true},
  "connectionString": {"type": "string", "value": "postgresql://$name:$password@$host:$port/$name", "sensitive": true}
}}
EOF
