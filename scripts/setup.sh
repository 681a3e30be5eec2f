#!/usr/bin/env bash
# Installs what pglab needs on a fresh Debian 12 machine (run as root, or with sudo available):
# PostgreSQL 15 (server, pg_basebackup, pgbench, psql), HAProxy, Chromium (browser checks of the stats
# page), a C compiler (the balancer's kernel relay), psycopg 3, asyncpg, pgjdbc and a JDK (the client matrix), a
# Docker engine and a local PostgreSQL image (nodes as containers), then the npm packages and the build.
# Used by .ci/run and by the Vagrant VM.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v pg_basebackup >/dev/null 2>&1 && command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-client-15 postgresql-contrib)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)   # the lab's CA and server certificates
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# A C compiler for the balancer's kernel relay (scripts/build-native.mjs; Node's headers come with Node).
command -v cc >/dev/null 2>&1 && [ -e /usr/include/linux/bpf.h ] || missing+=(gcc libc6-dev linux-libc-dev)
# Labs with --hosts (nodes in network namespaces) and their network faults: ip, iptables (setpriv is util-linux).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
# The client matrix (test/client-matrix.test.ts): psycopg 3 and asyncpg for Debian's /usr/bin/python3,
# pgjdbc, and a JDK (the `java File.java` source launcher needs the jdk.compiler module, which a JRE lacks).
# postgres.js is an npm devDependency.
/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || missing+=(python3-psycopg)
/usr/bin/python3 -c 'import asyncpg' >/dev/null 2>&1 || missing+=(python3-asyncpg)
[ -e /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
java --list-modules 2>/dev/null | grep '^jdk\.compiler@' >/dev/null || missing+=(openjdk-17-jdk-headless)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! id postgres >/dev/null 2>&1; then
  echo "setup: creating the unprivileged OS user postgres (PostgreSQL refuses to run as root)"
  $SUDO useradd --system --create-home --shell /bin/bash postgres
fi

# A Docker engine and the local PostgreSQL image, for nodes as containers (no registry needed).
$SUDO bash scripts/ensure-docker.sh

# When lab runs as root, PostgreSQL runs as postgres: it must reach the binaries under node_modules.
dir="$PWD"
while [ "$dir" != "/" ]; do
  if [ "$(id -u)" -eq 0 ] && ! su postgres -s /bin/sh -c "test -x '$dir'" 2>/dev/null; then
    echo "setup: letting the postgres user traverse $dir (chmod o+x)"
    chmod o+x "$dir"
  fi
  dir="$(dirname "$dir")"
done

npm ci --no-audit --no-fund
npm run build
$SUDO bash scripts/build-image.sh >/dev/null
