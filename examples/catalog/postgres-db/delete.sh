#!/bin/sh
# Placeholder: a real definition deletes the database here (ADE custom-runner contract).
echo "delete ${ADE_ENVIRONMENT_NAME:-unknown}"
