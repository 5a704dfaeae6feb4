#!/bin/sh
# static-site delete (ADE custom-runner contract): removes the environment's site (see
# deploy.sh for where it lives). Deleting twice is not an error.
set -eu

fail() {
    printf 'static-site: %s\n' "$*" >&2
    if [ -n "${ADE_ERROR_LOG:-}" ]; then
        printf '%s\n' "$*" >>"$ADE_ERROR_LOG"
    fi
    exit 1
}

[ -n "${ADE_ENVIRONMENT_NAME:-}" ] || fail "ADE_ENVIRONMENT_NAME is not set"
[ -n "${ADE_STORAGE:-}" ] || fail "ADE_STORAGE is not set"
env_name=$ADE_ENVIRONMENT_NAME
case "$env_name" in
'' | *[!a-z0-9-]* | -*) fail "refusing environment name '$env_name': a DNS label is expected" ;;
esac

if [ -n "${SITES_ROOT:-}" ]; then
    case "$SITES_ROOT" in
    /*) ;;
    *) fail "SITES_ROOT must be an absolute path, not '$SITES_ROOT'" ;;
    esac
    site="${SITES_ROOT%/}/$env_name"
else
    site="$ADE_STORAGE/site"
fi

rm -rf -- "$site"
echo "site of $env_name removed"
