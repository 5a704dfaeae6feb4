#!/bin/sh
# static-site preview (SPEC 14): what a deploy or delete would do to the site's pages,
# changing nothing. Exit 0: no changes; 2: changes, listed in the file ADE_PLAN names as
# [{"action": "create|update|delete|replace", "resource": "..."}]; anything else: an error.
# PAVED_PLAN_OPERATION says which operation is previewed (deploy or delete).
set -eu

[ -n "${ADE_ENVIRONMENT_NAME:-}" ] || { echo "ADE_ENVIRONMENT_NAME is not set" >&2; exit 1; }
[ -n "${ADE_STORAGE:-}" ] || { echo "ADE_STORAGE is not set" >&2; exit 1; }
env_name=$ADE_ENVIRONMENT_NAME
case "$env_name" in
'' | *[!a-z0-9-]* | -*) echo "refusing environment name '$env_name'" >&2; exit 1 ;;
esac
if [ -n "${SITES_ROOT:-}" ]; then site="${SITES_ROOT%/}/$env_name"; else site="$ADE_STORAGE/site"; fi

params="${ADE_OPERATION_PARAMETERS:-}"
case "$params" in
*'"pages":3'* | *'"pages": 3'*) pages=3 ;;
*'"pages":2'* | *'"pages": 2'*) pages=2 ;;
*) pages=1 ;;
esac

page() { if [ "$1" -eq 1 ]; then echo index.html; else echo "page-$1.html"; fi; }
list=""
add() {
    list="$list${list:+,}{\"action\":\"$1\",\"resource\":\"$2\"}"
    echo "  $1 $2"
}

echo "Preview of $env_name (${PAVED_PLAN_OPERATION:-deploy}):"
if [ "${PAVED_PLAN_OPERATION:-deploy}" = delete ]; then
    for f in "$site"/*.html; do
        [ -e "$f" ] && add delete "site/$(basename "$f")"
    done
else
    i=1
    while [ "$i" -le 3 ]; do
        f=$(page "$i")
        if [ "$i" -le "$pages" ]; then
            if [ -e "$site/$f" ]; then add update "site/$f"; else add create "site/$f"; fi
        elif [ -e "$site/$f" ]; then
            add delete "site/$f"
        fi
        i=$((i + 1))
    done
fi
if [ -z "$list" ]; then
    echo "  nothing to change"
    exit 0
fi
if [ -n "${ADE_PLAN:-}" ]; then printf '[%s]\n' "$list" >"$ADE_PLAN"; fi
exit 2
