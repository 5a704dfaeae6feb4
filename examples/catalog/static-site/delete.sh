#!/bin/sh
# Placeholder: a real definition removes the site from ADE_STORAGE here.
echo "delete ${ADE_ENVIRONMENT_NAME:-unknown}"
