#!/bin/sh
# Placeholder: a real definition provisions its resources here (ADE custom-runner contract).
echo "deploy ${ADE_ENVIRONMENT_NAME:-unknown}"
echo "parameters: ${ADE_OPERATION_PARAMETERS:-none}"
