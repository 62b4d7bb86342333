#!/usr/bin/env bash
# Configure Vault (or OpenBao) for applications that use vaultdb. Idempotent: run it again
# after changing a setting; mounts are enabled only once, everything else is written as is.
#
# What it sets up (names are the defaults; every one is an environment variable below):
#   auth/kubernetes                  Kubernetes auth: Vault asks the API server (TokenReview)
#   auth/kubernetes/role/app         SA app in namespace app, audience "vault" -> policy app
#   auth/kubernetes/role/app-migrate SA app-migrate, same namespace           -> policy app-migrate
#   database/                        database secrets engine, connection "app-postgres"
#   database/roles/app               users IN ROLE app_rw (rows only)
#   database/roles/app-migrate       users IN ROLE app_owner, acting as it (own the schema)
#   policies app, app-migrate        read their own creds path, renew and revoke leases
#
# DB_KIND=mysql (MySQL or MariaDB; e.g. with DB_MOUNT=mysql): connection "app-mysql" with the
# mysql-database-plugin; app users may read and write rows of MYSQL_DATABASE, migration users
# may change its schema; revocation drops the user and ends its open sessions.
#
# Prerequisites: the PostgreSQL group roles from postgres-roles.sql (for MySQL/MariaDB, the
# admin user from mysql-setup.sql), and a Vault token that may manage mounts, policies and
# roles (VAULT_ADDR/VAULT_TOKEN, or BAO_ADDR/BAO_TOKEN).
#
# TTL advice (see docs/vault.md): a lease never outlives the login token that created it,
# so keep the login token renewable for at least as long as a lease may live (token_max_ttl
# 0 = the mount's maximum), and make LEASE_TTL short enough that a leaked password is soon
# useless but long enough that renewals stay rare (vaultdb renews at 2/3 of it).
set -euo pipefail

# --- settings -------------------------------------------------------------------------------
VAULT_BIN=${VAULT_BIN:-$(command -v vault || command -v bao || echo vault)}
K8S_AUTH_MOUNT=${K8S_AUTH_MOUNT:-kubernetes}
DB_MOUNT=${DB_MOUNT:-database}
DB_KIND=${DB_KIND:-postgresql}                    # postgresql, or mysql (MySQL and MariaDB)
case "$DB_KIND" in
    postgresql) DB_CONNECTION=${DB_CONNECTION:-app-postgres} ;;
    mysql) DB_CONNECTION=${DB_CONNECTION:-app-mysql} ;;
    *) printf 'DB_KIND must be postgresql or mysql, not %s\n' "$DB_KIND" >&2; exit 2 ;;
esac

# Kubernetes API as Vault sees it. In-cluster Vault: https://kubernetes.default.svc and
# nothing else. External Vault: the API server URL, its CA, and DISABLE_LOCAL_CA_JWT=true.
K8S_HOST=${K8S_HOST:-https://kubernetes.default.svc}
K8S_CA_CERT_FILE=${K8S_CA_CERT_FILE:-}
TOKEN_REVIEWER_JWT=${TOKEN_REVIEWER_JWT:-}        # empty: Vault's own or the client's JWT
DISABLE_LOCAL_CA_JWT=${DISABLE_LOCAL_CA_JWT:-false}

APP_NAMESPACE=${APP_NAMESPACE:-app}
APP_SERVICE_ACCOUNT=${APP_SERVICE_ACCOUNT:-app}
MIGRATE_SERVICE_ACCOUNT=${MIGRATE_SERVICE_ACCOUNT:-app-migrate}
TOKEN_AUDIENCE=${TOKEN_AUDIENCE:-vault}           # the projected token's audience
APP_ROLE=${APP_ROLE:-app}                         # Vault role names (auth and database)
MIGRATE_ROLE=${MIGRATE_ROLE:-app-migrate}

PG_HOST=${PG_HOST:-postgres.db.svc}
PG_PORT=${PG_PORT:-5432}
PG_DATABASE=${PG_DATABASE:-app}
PG_SSLMODE=${PG_SSLMODE:-require}
PG_ADMIN_USER=${PG_ADMIN_USER:-vault_admin}       # may CREATE ROLE; see postgres-roles.sql
PG_ADMIN_PASSWORD=${PG_ADMIN_PASSWORD:-}          # empty: keep the stored connection as is
DB_OWNER_ROLE=${DB_OWNER_ROLE:-app_owner}
DB_APP_GROUP=${DB_APP_GROUP:-app_rw}

MYSQL_HOST=${MYSQL_HOST:-mysql.db.svc}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_DATABASE=${MYSQL_DATABASE:-app}
MYSQL_ADMIN_USER=${MYSQL_ADMIN_USER:-vault_admin} # see mysql-setup.sql
MYSQL_ADMIN_PASSWORD=${MYSQL_ADMIN_PASSWORD:-}    # empty: keep the stored connection as is
# mysql-database-plugin: user names up to 32 characters (MySQL 5.7+ and MariaDB); the
# mysql-legacy/-rds/-aurora variants cut them to 16 for older servers.
MYSQL_PLUGIN=${MYSQL_PLUGIN:-mysql-database-plugin}
MYSQL_USERNAME_TEMPLATE=${MYSQL_USERNAME_TEMPLATE:-}  # empty: the plugin's default
# DROP USER leaves open sessions working. MariaDB: KILL USER. MySQL has no KILL USER: use the
# procedure of mysql-setup.sql, "CALL vault_tools.kill_user_sessions('{{name}}');".
MYSQL_KILL_SESSIONS=${MYSQL_KILL_SESSIONS:-"KILL USER '{{name}}';"}

LOGIN_TOKEN_TTL=${LOGIN_TOKEN_TTL:-1h}            # renewed by vaultdb at 2/3
LOGIN_TOKEN_MAX_TTL=${LOGIN_TOKEN_MAX_TTL:-0}     # 0: up to the mount's max; vaultdb re-logs in
LEASE_TTL=${LEASE_TTL:-1h}                        # renewed by vaultdb at 2/3
LEASE_MAX_TTL=${LEASE_MAX_TTL:-24h}               # vaultdb rotates before it

# --- helpers --------------------------------------------------------------------------------
v() { "$VAULT_BIN" "$@"; }
say() { printf '%s\n' "$*" >&2; }

mounted() {  # mounted secrets|auth PATH
    # No pipe into `grep -q`: under pipefail its early exit would fail the listing (SIGPIPE).
    local listing
    listing=$(v "$1" list -format=json)
    grep -q "\"${2%/}/\"" <<<"$listing"
}

# --- Kubernetes auth ------------------------------------------------------------------------
if mounted auth "$K8S_AUTH_MOUNT"; then
    say "auth/$K8S_AUTH_MOUNT: already enabled"
else
    v auth enable -path="$K8S_AUTH_MOUNT" kubernetes >/dev/null
    say "auth/$K8S_AUTH_MOUNT: enabled"
fi

k8s_config=("kubernetes_host=$K8S_HOST" "disable_local_ca_jwt=$DISABLE_LOCAL_CA_JWT")
[ -n "$K8S_CA_CERT_FILE" ] && k8s_config+=("kubernetes_ca_cert=@$K8S_CA_CERT_FILE")
[ -n "$TOKEN_REVIEWER_JWT" ] && k8s_config+=("token_reviewer_jwt=$TOKEN_REVIEWER_JWT")
v write "auth/$K8S_AUTH_MOUNT/config" "${k8s_config[@]}" >/dev/null
say "auth/$K8S_AUTH_MOUNT/config: written"

# --- database secrets engine ----------------------------------------------------------------
if mounted secrets "$DB_MOUNT"; then
    say "$DB_MOUNT/: already enabled"
else
    v secrets enable -path="$DB_MOUNT" database >/dev/null
    say "$DB_MOUNT/: enabled"
fi

write_mysql_role() {  # write_mysql_role NAME PRIVILEGES DEFAULT_TTL MAX_TTL
    # MySQL has no object owner: privileges on the schema let every dynamic user use (and,
    # for migration users, alter) what an earlier one created. Views and routines: create
    # them SQL SECURITY INVOKER (docs/mysql.md).
    v write "$DB_MOUNT/roles/$1" - >/dev/null <<EOF
{
  "db_name": "$DB_CONNECTION",
  "default_ttl": "$3",
  "max_ttl": "$4",
  "creation_statements": [
    "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';",
    "GRANT $2 ON \`$MYSQL_DATABASE\`.* TO '{{name}}'@'%';"
  ],
  "revocation_statements": [
    "DROP USER IF EXISTS '{{name}}'@'%';",
    "$MYSQL_KILL_SESSIONS"
  ]
}
EOF
    say "$DB_MOUNT/roles/$1: written"
}

if [ "$DB_KIND" = mysql ]; then
    if [ -n "$MYSQL_ADMIN_PASSWORD" ]; then
        template=()
        [ -z "$MYSQL_USERNAME_TEMPLATE" ] || template=("username_template=$MYSQL_USERNAME_TEMPLATE")
        v write "$DB_MOUNT/config/$DB_CONNECTION" \
            "plugin_name=$MYSQL_PLUGIN" \
            "connection_url={{username}}:{{password}}@tcp($MYSQL_HOST:$MYSQL_PORT)/" \
            "username=$MYSQL_ADMIN_USER" \
            "password=$MYSQL_ADMIN_PASSWORD" \
            "allowed_roles=$APP_ROLE,$MIGRATE_ROLE" \
            ${template[@]+"${template[@]}"} \
            verify_connection=true >/dev/null
        say "$DB_MOUNT/config/$DB_CONNECTION: written (consider: $VAULT_BIN write -f $DB_MOUNT/rotate-root/$DB_CONNECTION)"
    elif v read "$DB_MOUNT/config/$DB_CONNECTION" >/dev/null 2>&1; then
        say "$DB_MOUNT/config/$DB_CONNECTION: kept (MYSQL_ADMIN_PASSWORD not given)"
    else
        say "MYSQL_ADMIN_PASSWORD is required the first time ($DB_MOUNT/config/$DB_CONNECTION is missing)"
        exit 2
    fi
    write_mysql_role "$APP_ROLE" "SELECT, INSERT, UPDATE, DELETE" "$LEASE_TTL" "$LEASE_MAX_TTL"
    write_mysql_role "$MIGRATE_ROLE" "ALL PRIVILEGES" 15m 2h
fi

# PostgreSQL (DB_KIND=postgresql): the block below, unindented so its here-documents stay
# readable.
if [ "$DB_KIND" = postgresql ]; then
if [ -n "$PG_ADMIN_PASSWORD" ]; then
    # verify_connection: fail now, not at the first credentials request.
    v write "$DB_MOUNT/config/$DB_CONNECTION" \
        plugin_name=postgresql-database-plugin \
        "connection_url=postgresql://{{username}}:{{password}}@$PG_HOST:$PG_PORT/$PG_DATABASE?sslmode=$PG_SSLMODE" \
        "username=$PG_ADMIN_USER" \
        "password=$PG_ADMIN_PASSWORD" \
        "allowed_roles=$APP_ROLE,$MIGRATE_ROLE" \
        verify_connection=true >/dev/null
    say "$DB_MOUNT/config/$DB_CONNECTION: written (consider: $VAULT_BIN write -f $DB_MOUNT/rotate-root/$DB_CONNECTION)"
elif v read "$DB_MOUNT/config/$DB_CONNECTION" >/dev/null 2>&1; then
    say "$DB_MOUNT/config/$DB_CONNECTION: kept (PG_ADMIN_PASSWORD not given)"
else
    say "PG_ADMIN_PASSWORD is required the first time ($DB_MOUNT/config/$DB_CONNECTION is missing)"
    exit 2
fi

# Revocation ends open sessions first: PostgreSQL lets sessions of a dropped role carry on.
# REVOKE drops the CONNECT grant, which would otherwise make DROP ROLE fail.
revocation="[
  \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';\",
  \"REVOKE ALL ON DATABASE \\\"$PG_DATABASE\\\" FROM \\\"{{name}}\\\";\",
  \"DROP ROLE IF EXISTS \\\"{{name}}\\\";\"
]"

# Application users: rows only, through the app_rw group (default privileges of app_owner).
v write "$DB_MOUNT/roles/$APP_ROLE" - >/dev/null <<EOF
{
  "db_name": "$DB_CONNECTION",
  "default_ttl": "$LEASE_TTL",
  "max_ttl": "$LEASE_MAX_TTL",
  "creation_statements": [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE \"$DB_APP_GROUP\";",
    "GRANT CONNECT ON DATABASE \"$PG_DATABASE\" TO \"{{name}}\";"
  ],
  "revocation_statements": $revocation
}
EOF
say "$DB_MOUNT/roles/$APP_ROLE: written"

# Migration users act as the owner role, so the objects they create are owned by app_owner
# and their own DROP ROLE never fails with "some objects depend on it".
v write "$DB_MOUNT/roles/$MIGRATE_ROLE" - >/dev/null <<EOF
{
  "db_name": "$DB_CONNECTION",
  "default_ttl": "15m",
  "max_ttl": "2h",
  "creation_statements": [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE \"$DB_OWNER_ROLE\";",
    "ALTER ROLE \"{{name}}\" SET role = '$DB_OWNER_ROLE';",
    "GRANT CONNECT ON DATABASE \"$PG_DATABASE\" TO \"{{name}}\";"
  ],
  "revocation_statements": $revocation
}
EOF
say "$DB_MOUNT/roles/$MIGRATE_ROLE: written"
fi

# --- policies: each identity reads only its own credentials ---------------------------------
write_policy() {  # write_policy NAME DB_ROLE
    v policy write "$1" - >/dev/null <<EOF
# Written by examples/vault/setup.sh for vaultdb.
path "$DB_MOUNT/creds/$2" {
  capabilities = ["read"]
}
# Renew and revoke the leases of those credentials (vaultdb revokes at exit).
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/leases/revoke" {
  capabilities = ["update"]
}
# Token lookup-self, renew-self and revoke-self come from the "default" policy.
EOF
    say "policy $1: written"
}
write_policy "$APP_ROLE" "$APP_ROLE"
write_policy "$MIGRATE_ROLE" "$MIGRATE_ROLE"

# --- Kubernetes auth roles: which service account gets which policy -------------------------
write_login_role() {  # write_login_role NAME SERVICE_ACCOUNT
    v write "auth/$K8S_AUTH_MOUNT/role/$1" \
        "bound_service_account_names=$2" \
        "bound_service_account_namespaces=$APP_NAMESPACE" \
        "audience=$TOKEN_AUDIENCE" \
        "token_policies=$1" \
        "token_ttl=$LOGIN_TOKEN_TTL" \
        "token_max_ttl=$LOGIN_TOKEN_MAX_TTL" >/dev/null
    say "auth/$K8S_AUTH_MOUNT/role/$1: written"
}
write_login_role "$APP_ROLE" "$APP_SERVICE_ACCOUNT"
write_login_role "$MIGRATE_ROLE" "$MIGRATE_SERVICE_ACCOUNT"

say "done: pods log in with VAULTDB_AUTH_MOUNT=$K8S_AUTH_MOUNT VAULTDB_AUTH_ROLE=$APP_ROLE VAULTDB_MOUNT=$DB_MOUNT VAULTDB_ROLE=$APP_ROLE"
