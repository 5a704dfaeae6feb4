#!/bin/sh
# static-site status (Paved's drift check): compares the published site with the
# environment's parameters. Exit 0: in sync; 2: drifted (each difference on its own line);
# anything else: the check could not tell. Reads nothing but the site (see deploy.sh for
# where it lives) and changes nothing.
set -eu

fail() {
    printf 'static-site: %s\n' "$*" >&2
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

# What the parameters ask for, read as deploy.sh reads them.
params="${ADE_OPERATION_PARAMETERS:-}"
title=$(printf '%s' "$params" |
    sed -n 's/.*"title"[ ]*:[ ]*"\([^"\\]*\(\\.[^"\\]*\)*\)".*/\1/p')
title=$(printf '%s' "$title" | sed -e 's/\\"/"/g' -e 's/\\\//\//g' -e 's/\\\\/\\/g')
[ -n "$title" ] || title="Preview"
case "$params" in
*'"pages":3'* | *'"pages": 3'*) pages=3 ;;
*'"pages":2'* | *'"pages": 2'*) pages=2 ;;
*) pages=1 ;;
esac
heading=$(printf '%s' "$title" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' \
    -e 's/"/\&quot;/g' -e "s/'/\&#39;/g")

drift=0
say() {
    printf '%s\n' "$*"
    drift=1
}
if [ ! -f "$site/index.html" ]; then
    say "index.html is missing from $site"
else
    if ! grep -qxF "<h1>$heading</h1>" "$site/index.html"; then
        say "index.html does not carry the title \"$title\""
    fi
fi
i=2
while [ "$i" -le 3 ]; do
    if [ "$i" -le "$pages" ] && [ ! -f "$site/page-$i.html" ]; then
        say "page-$i.html is missing ($pages page(s) asked for)"
    elif [ "$i" -gt "$pages" ] && [ -e "$site/page-$i.html" ]; then
        say "page-$i.html is there although $pages page(s) were asked for"
    fi
    i=$((i + 1))
done
extra=$(find "$site" -maxdepth 1 -type f ! -name 'index.html' ! -name 'page-[23].html' 2>/dev/null | head -5)
if [ -n "$extra" ]; then
    say "files deploy.sh did not write: $(printf '%s' "$extra" | tr '\n' ' ')"
fi
if [ "$drift" -ne 0 ]; then
    exit 2
fi
echo "the site of $env_name matches its parameters ($pages page(s), title \"$title\")"
