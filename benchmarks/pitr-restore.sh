#!/usr/bin/env bash
# Times a restore to a restore point: `lab node restore --target-name` against the same restore done by
# hand (pg_basebackup taken beforehand, cp of it, recovery.signal + restore_command + recovery_target_name,
# pg_ctl start, poll until promoted), from the same lab's archive, in one invocation, on PostgreSQL 15.
# Data: pgbench -i -s ${SCALE:-10} (~150 MB), then ${TXNS:-2000} pgbench transactions x 2 clients after
# both base backups, then the restore point. Prints both times and the ratio. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=/usr/lib/postgresql/15/bin
SCALE=${SCALE:-10}; TXNS=${TXNS:-2000}
ROOT=$(mktemp -d /tmp/pglab-pitr-bench-XXXXXX); chmod 755 "$ROOT"
freeport() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
P1=$(freeport); P2=$(freeport); P3=$(freeport)
LAB="$ROOT/lab"; RAW="$ROOT/raw"
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
cleanup() {
  [ -f "$RAW/r2/postmaster.pid" ] && as_pg "$BIN/pg_ctl -D $RAW/r2 -m immediate stop" >/dev/null 2>&1 || true
  node bin/lab.js --lab-dir "$LAB" destroy --yes >/dev/null 2>&1 || true
  rm -rf "$ROOT"
}
[ -n "${BENCH_KEEP:-}" ] || trap cleanup EXIT
mkdir -p "$RAW"; [ "$(id -u)" -eq 0 ] && chown postgres "$RAW"
now() { date +%s.%N; }

node bin/lab.js --lab-dir "$LAB" master start --archive --port "$P1" >/dev/null 2>&1
eval "$(node bin/lab.js --lab-dir "$LAB" env)"
# The postgres OS user runs pg_basebackup: it needs the lab's pgpass and CA readable.
install -o postgres -m 600 "$PGPASSFILE" "$RAW/pgpass"; install -o postgres -m 644 "$PGSSLROOTCERT" "$RAW/ca.crt"
node bin/lab.js --lab-dir "$LAB" bench init -s "$SCALE" >/dev/null 2>&1
SIZE=$(psql -Atc "select pg_size_pretty(pg_database_size(current_database()))")

t=$(now); node bin/lab.js --lab-dir "$LAB" backup >/dev/null 2>&1; LAB_BACKUP=$(echo "$(now) - $t" | bc)
t=$(now)
as_pg "PGPASSFILE=$RAW/pgpass PGSSLROOTCERT=$RAW/ca.crt PGSSLMODE=verify-ca $BIN/pg_basebackup -h 127.0.0.1 -p $P1 -U postgres -D $RAW/backup -X fetch --checkpoint=fast"
HAND_BACKUP=$(echo "$(now) - $t" | bc)

pgbench -n -c 2 -t "$TXNS" >/dev/null 2>&1
node bin/lab.js --lab-dir "$LAB" restore-point rp >/dev/null 2>&1
ROWS=$(psql -Atc "select sum(abalance) from pgbench_accounts")

ours() {
t=$(now)
node bin/lab.js --lab-dir "$LAB" node restore r1 "$LAB/r1" "$P2" --target-name rp >/dev/null 2>&1
LAB_RESTORE=$(echo "$(now) - $t" | bc)
[ "$(psql -p "$P2" -Atc "select sum(abalance) from pgbench_accounts")" = "$ROWS" ] || { echo "lab restore: wrong data" >&2; exit 1; }

}
hand() {
t=$(now)
as_pg "cp -a $RAW/backup $RAW/r2 && touch $RAW/r2/recovery.signal && rm -f $RAW/r2/postmaster.pid && cat >> $RAW/r2/postgresql.auto.conf <<EOF
port = $P3
archive_mode = off
restore_command = 'cp $LAB/archive/%f %p'
recovery_target_name = 'rp'
recovery_target_action = 'promote'
EOF"
as_pg "$BIN/pg_ctl -w -D $RAW/r2 -l $RAW/r2.log start >/dev/null"
until [ "$(psql -p "$P3" -Atc 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.05; done
HAND_RESTORE=$(echo "$(now) - $t" | bc)
[ "$(psql -p "$P3" -Atc "select sum(abalance) from pgbench_accounts")" = "$ROWS" ] || { echo "hand restore: wrong data" >&2; exit 1; }

}
# Both read the same archive: the one run second may find it in the page cache (HAND_FIRST=1 swaps them).
if [ -n "${HAND_FIRST:-}" ]; then hand; ours; else ours; hand; fi
WAL=$(ls "$LAB/archive" | grep -c '^[0-9A-F]\{24\}$')
printf 'pgbench -i -s %s (%s), %s x 2 transactions after the backups, %s WAL files archived\n' "$SCALE" "$SIZE" "$TXNS" "$WAL"
printf 'base backup:  lab backup %.2f s   pg_basebackup -X fetch %.2f s\n' "$LAB_BACKUP" "$HAND_BACKUP"
printf 'restore to a restore point (copy, replay from the archive, promoted):  lab node restore %.2f s   by hand %.2f s   ratio lab/hand %.2f\n' "$LAB_RESTORE" "$HAND_RESTORE" "$(echo "$LAB_RESTORE / $HAND_RESTORE" | bc -l)"
