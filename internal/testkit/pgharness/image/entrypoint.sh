#!/bin/sh
# Runs PostgreSQL under a supervisor loop so that the harness can stop and restart the server
# process without the container (and its published port) going away. While the file
# /run/pgsteady/down exists the server stays down.
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=/var/lib/pgsteady/data
run=/run/pgsteady

if [ ! -s "$data/PG_VERSION" ]; then
	umask 077
	printf '%s\n' "$PGSTEADY_SUPERUSER_PASSWORD" >"$run/pwfile"
	"$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 --pwfile="$run/pwfile" >/dev/null
	rm -f "$run/pwfile"
	printf '%s' "$PGSTEADY_TLS_CERT" >"$run/server.crt"
	printf '%s' "$PGSTEADY_TLS_KEY" >"$run/server.key"
	printf '%s' "$PGSTEADY_TLS_CA" >"$run/ca.crt"
	cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '*'
port = 5432
unix_socket_directories = '$run'
max_connections = 400
ssl = on
ssl_cert_file = '$run/server.crt'
ssl_key_file = '$run/server.key'
password_encryption = 'scram-sha-256'
# A disposable test server: durability against power loss is not under test.
fsync = off
full_page_writes = off
CONF
	cat >"$data/pg_hba.conf" <<CONF
local all all trust
hostssl all all all scram-sha-256
CONF
	"$bin/postgres" --single -j -D "$data" postgres >/dev/null <<SQL
CREATE ROLE app LOGIN CREATEDB PASSWORD '$PGSTEADY_APP_PASSWORD';

CREATE DATABASE pgsteady OWNER app;

SQL
	cat >"$run/userlist.txt" <<CONF
"app" "$PGSTEADY_APP_PASSWORD"
"postgres" "$PGSTEADY_SUPERUSER_PASSWORD"
CONF
	cat >"$run/pgbouncer.ini" <<CONF
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir = $run
pidfile = $run/pgbouncer.pid
auth_type = scram-sha-256
auth_file = $run/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
client_tls_sslmode = require
client_tls_cert_file = $run/server.crt
client_tls_key_file = $run/server.key
client_tls_ca_file = $run/ca.crt
server_tls_sslmode = require
server_tls_ca_file = $run/ca.crt
admin_users = postgres
CONF
fi

pgbouncer -d "$run/pgbouncer.ini"

stop=0
pid=
trap 'stop=1; [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null || true' INT TERM
while [ "$stop" = 0 ]; do
	if [ -e "$run/down" ]; then
		sleep 0.1
		continue
	fi
	"$bin/postgres" -D "$data" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		wait "$pid" || true
	done
	pid=
done
