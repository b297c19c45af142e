#!/bin/sh
# The MLflow image's command: `mlflow server` behind MLflow's basic-auth app, as `steelflow server` runs it.
# Every setting comes from the environment (docker/compose.yaml): the store URIs, which may hold a database
# password, are read by `mlflow server` itself, and the admin's password (MLFLOW_AUTH_ADMIN_PASSWORD, or a
# file named by MLFLOW_AUTH_ADMIN_PASSWORD_FILE, e.g. a Docker secret) reaches MLflow the same way: none of
# them is ever on a command line, which every user of the machine can read. The auth settings file holds the
# auth database's URI, so it is written readable by this user only.
set -eu
if [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD_FILE:-}" ]; then
  MLFLOW_AUTH_ADMIN_PASSWORD=$(cat "$MLFLOW_AUTH_ADMIN_PASSWORD_FILE")
  export MLFLOW_AUTH_ADMIN_PASSWORD
fi
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (or MLFLOW_AUTH_ADMIN_PASSWORD_FILE): the admin created on the first start}"
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI}"
umask 077
mkdir -p "$(dirname "$MLFLOW_AUTH_CONFIG_PATH")"
# Users and permissions live in the backend store's database unless MLFLOW_AUTH_DATABASE_URI says otherwise;
# configparser reads '%' as interpolation, so it is doubled.
auth_db=$(printf '%s' "${MLFLOW_AUTH_DATABASE_URI:-$MLFLOW_BACKEND_STORE_URI}" | sed 's/%/%%/g')
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = READ
database_uri = $auth_db
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
# Signs the sign-up page's CSRF token; every worker inherits this one.
if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
  MLFLOW_FLASK_SERVER_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')
  export MLFLOW_FLASK_SERVER_SECRET_KEY
fi
exec mlflow server --app-name basic-auth --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers 1
