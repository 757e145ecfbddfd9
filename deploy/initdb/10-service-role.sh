#!/bin/sh
# Runs once, when the database's volume is first created (the postgres image runs the
# scripts of /docker-entrypoint-initdb.d then): the role the service connects as. It
# owns nothing and cannot bypass row-level security; POSTGRES_USER owns the tables and
# runs the migrations. The migrations grant jointeval_app its privileges.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$JOINTEVAL_SERVICE_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
create role jointeval_app nologin;
create role jointeval_service login password :'password' in role jointeval_app;
SQL
