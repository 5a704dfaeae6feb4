#!/bin/sh
# postgres-db delete (ADE custom-runner contract): ends the sessions on the environment's
# database, then drops the database and its role if they exist, in the PostgreSQL server
# named by POSTGRES_ADMIN_URL (see deploy.sh). Deleting twice is not an error.
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
[ -n "${POSTGRES_ADMIN_URL:-}" ] ||
    fail "POSTGRES_ADMIN_URL is not set: add it under [runner.env] in the service config"
command -v psql >/dev/null 2>&1 || fail "psql is not on the runner's PATH ($PATH)"

name="env_$(printf '%s' "$ADE_ENVIRONMENT_NAME" | tr '-' '_')"
case "$name" in
*[!a-z0-9_]*) fail "refusing database name '$name': only a-z, 0-9 and _ are allowed" ;;
esac
[ "${#name}" -le 60 ] || fail "refusing database name '$name': longer than 60 characters"

errfile=$(mktemp)
trap 'rm -f "$errfile"' EXIT

export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-10}"
if ! psql -X -q -v ON_ERROR_STOP=1 -d "$POSTGRES_ADMIN_URL" -v name="$name" \
    2>"$errfile" >/dev/null <<'EOF'; then
-- No new sessions, then end the open ones (servers before 13 have no DROP ... FORCE).
SELECT format('ALTER DATABASE %I ALLOW_CONNECTIONS false', :'name')
 WHERE EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \gexec
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE datname = :'name' AND pid <> pg_backend_pid();
SELECT format('DROP DATABASE IF EXISTS %I%s', :'name',
       CASE WHEN current_setting('server_version_num')::int >= 130000
            THEN ' WITH (FORCE)' ELSE '' END) \gexec
DROP ROLE IF EXISTS :"name";
EOF
    psql_failed "could not drop database $name"
fi
cat "$errfile" >&2

if [ -n "${ADE_STORAGE:-}" ]; then
    rm -f "$ADE_STORAGE/password"
fi
echo "database and role $name dropped"
