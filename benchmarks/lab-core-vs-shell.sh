#!/usr/bin/env bash
# Times `lab master start` + three `lab replica add` against the same raw PostgreSQL commands run by a
# shell script (what the seed's repli-config scripts did, on PostgreSQL 15), in one invocation, on free
# ports in temporary dirs. Prints both times and the ratio. Run as root (PostgreSQL runs as postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=/usr/lib/postgresql/15/bin
ROOT=$(mktemp -d /tmp/pglab-bench-XXXXXX); chmod 755 "$ROOT"
freeport() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
PORTS=(); for _ in 1 2 3 4 5 6 7 8; do PORTS+=("$(freeport)"); done
RAW="$ROOT/raw"; LAB="$ROOT/lab"
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
cleanup() {
  for d in "$RAW"/*/; do [ -f "$d/postmaster.pid" ] && as_pg "$BIN/pg_ctl -D $d -m immediate stop" >/dev/null 2>&1 || true; done
  node bin/lab.js --lab-dir "$LAB" destroy --yes >/dev/null 2>&1 || true
  rm -rf "$ROOT"
}
[ -n "${BENCH_KEEP:-}" ] || trap cleanup EXIT
mkdir -p "$RAW"; [ "$(id -u)" -eq 0 ] && chown postgres "$RAW"

raw() {
  local m=${PORTS[0]}
  as_pg "$BIN/initdb -D $RAW/master1 -U postgres --no-locale -E UTF8 -A trust >/dev/null"
  as_pg "cp lab/pg_hba.conf $RAW/master1/pg_hba.conf && sed -i 's/{{user}}/postgres/' $RAW/master1/pg_hba.conf"
  as_pg "printf \"listen_addresses='127.0.0.1'\nunix_socket_directories='/tmp'\nwal_level=replica\nmax_wal_senders=10\nhot_standby=on\n\" >> $RAW/master1/postgresql.conf"
  as_pg "$BIN/pg_ctl -w -D $RAW/master1 -l $RAW/master1.log -o '-p $m' start >/dev/null"
  for i in 1 2 3; do
    local p=${PORTS[$i]}
    psql -h 127.0.0.1 -p "$m" -U postgres -qc CHECKPOINT postgres
    as_pg "$BIN/pg_basebackup -h 127.0.0.1 -p $m -U postgres -D $RAW/replica$i -X stream --checkpoint=fast"
    as_pg "touch $RAW/replica$i/standby.signal && echo \"primary_conninfo='host=127.0.0.1 port=$m user=postgres application_name=replica$i'\" >> $RAW/replica$i/postgresql.auto.conf"
    as_pg "$BIN/pg_ctl -w -D $RAW/replica$i -l $RAW/replica$i.log -o '-p $p' start >/dev/null"
    until [ "$(psql -h 127.0.0.1 -p "$m" -U postgres -Atc "select count(*) from pg_stat_replication where application_name='replica$i' and state='streaming'" postgres)" = 1 ]; do sleep 0.05; done
  done
}

lab() {
  local m=${PORTS[4]}
  node bin/lab.js --lab-dir "$LAB" master start --port "$m" >/dev/null 2>&1
  for i in 1 2 3; do node bin/lab.js --lab-dir "$LAB" replica add "replica$i" "$LAB/replica$i" "${PORTS[$((4 + i))]}" >/dev/null 2>&1; done
}

t0=$(date +%s.%N); raw; t1=$(date +%s.%N); lab; t2=$(date +%s.%N)
awk -v r="$(echo "$t1 - $t0" | bc)" -v l="$(echo "$t2 - $t1" | bc)" 'BEGIN {
  printf "raw shell script (initdb, pg_ctl, pg_basebackup, psql): %.2f s\n", r
  printf "lab master start + 3 x lab replica add:                 %.2f s\n", l
  printf "ratio lab / raw: %.2f\n", l / r }'
