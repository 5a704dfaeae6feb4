#!/bin/sh
# static-site deploy (ADE custom-runner contract): publishes a small static site for the
# environment. It needs nothing but the filesystem.
#
# Where: SITES_ROOT/<environment name>/ when the service config sets SITES_ROOT under
# [runner.env] (e.g. a folder a web server serves); else ADE_STORAGE/site, which Paved
# keeps with the environment between operations.
#
# Parameters: title (any text: it is HTML-escaped, never interpreted) and pages (1-3).
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
[ -n "${ADE_OUTPUTS:-}" ] || fail "ADE_OUTPUTS is not set"
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

# Parameters, from the JSON text (no jq needed).
params="${ADE_OPERATION_PARAMETERS:-}"
# The title as JSON wrote it (a string with \" and \\ escapes), then unescaped.
title=$(printf '%s' "$params" |
    sed -n 's/.*"title"[ ]*:[ ]*"\([^"\\]*\(\\.[^"\\]*\)*\)".*/\1/p')
title=$(printf '%s' "$title" | sed -e 's/\\"/"/g' -e 's/\\\//\//g' -e 's/\\\\/\\/g')
[ -n "$title" ] || title="Preview"
case "$params" in
*'"pages":3'* | *'"pages": 3'*) pages=3 ;;
*'"pages":2'* | *'"pages": 2'*) pages=2 ;;
*) pages=1 ;;
esac

# HTML-escapes its argument.
html() {
    printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' \
        -e 's/"/\&quot;/g' -e "s/'/\&#39;/g"
}

# JSON-escapes its argument (backslash, quote; control characters are dropped).
json() {
    printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

mkdir -p "$site"
page_title=$(html "$title")
deployed=$(date -u +%Y-%m-%dT%H:%M:%SZ)
i=1
while [ "$i" -le "$pages" ]; do
    if [ "$i" -eq 1 ]; then file=index.html; else file="page-$i.html"; fi
    {
        printf '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        printf '<title>%s</title></head>\n<body>\n' "$page_title"
        printf '<h1>%s</h1>\n' "$page_title"
        printf '<p>Environment <code>%s</code> (type %s, team %s), page %s of %s.</p>\n' \
            "$env_name" "$(html "${ADE_ENVIRONMENT_TYPE:-?}")" \
            "$(html "${PAVED_ENVIRONMENT_TEAM:-?}")" "$i" "$pages"
        printf '<p>Deployed by Paved at %s from commit <code>%s</code>.</p>\n' \
            "$deployed" "$(html "${PAVED_COMMIT:-?}")"
        printf '</body>\n</html>\n'
    } >"$site/$file.tmp"
    mv "$site/$file.tmp" "$site/$file"
    i=$((i + 1))
done
# Pages left over from an earlier deploy with more pages.
while [ "$i" -le 3 ]; do
    rm -f "$site/page-$i.html"
    i=$((i + 1))
done

index="$site/index.html"
url="file://$(printf '%s' "$index" | sed -e 's/%/%25/g' -e 's/ /%20/g')"
echo "site of $env_name published at $url ($pages page(s))"

cat >"$ADE_OUTPUTS" <<JSON
{"outputs": {
  "url": {"type": "string", "value": "$(json "$url")", "sensitive": false},
  "path": {"type": "string", "value": "$(json "$index")", "sensitive": false}
}}
JSON
