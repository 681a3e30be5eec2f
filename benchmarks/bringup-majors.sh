#!/usr/bin/env bash
# Issue 16's bring-up figure: `lab master start` + three `lab replica add` on a newer major (default 17,
# whose replicas pglab backs up itself: there is no pg_basebackup 17 here) against the same on Debian's
# 15 with Debian's pg_basebackup (LAB_BASE_BACKUP=pg_basebackup), alternating, in one invocation, on free ports in temporary lab dirs.
# Prints each run's seconds and the ratio (newer / 15). Run as root from the repository root after
# `npm run build`; the newer major must be installed (`npx lab versions install 17`).
#
#   benchmarks/bringup-majors.sh                 # 17 against 15, 2 rounds
#   BENCH_MAJOR=18 BENCH_ROUNDS=3 benchmarks/bringup-majors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MAJOR=${BENCH_MAJOR:-17}
ROUNDS=${BENCH_ROUNDS:-2}
ROOT=$(mktemp -d /tmp/pglab-bench-XXXXXX); chmod 755 "$ROOT"
freeport() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
cleanup() {
  for dir in "$ROOT"/lab-*; do [ -f "$dir/lab.json" ] && node bin/lab.js --lab-dir "$dir" destroy --yes >/dev/null 2>&1 || true; done
  rm -rf "$ROOT"
}
trap cleanup EXIT

# One bring-up: seconds with millisecond precision on stdout.
bringup() {
  local pg=$1 dir="$ROOT/lab-$1-$2" method=pglab
  [ "$pg" = 15 ] && method=pg_basebackup
  local m; m=$(freeport)
  local start end
  start=$(date +%s%N)
  node bin/lab.js --lab-dir "$dir" --pg "$pg" master start --port "$m" >/dev/null 2>&1
  for i in 1 2 3; do LAB_BASE_BACKUP=$method node bin/lab.js --lab-dir "$dir" replica add "replica$i" "$dir/replica$i" "$(freeport)" >/dev/null 2>&1; done
  end=$(date +%s%N)
  node bin/lab.js --lab-dir "$dir" destroy --yes >/dev/null
  awk -v ns=$((end - start)) 'BEGIN { printf "%.2f", ns / 1e9 }'
}

if ! node bin/lab.js versions --json | node -e "process.exit(JSON.parse(require('fs').readFileSync(0,'utf8')).some((v)=>v.major===$MAJOR)?0:1)"; then
  echo "bringup-majors: PostgreSQL $MAJOR is not installed: npx lab versions install $MAJOR" >&2
  exit 1
fi
echo "bring-up of master + 3 replicas: PostgreSQL $MAJOR (pglab's base backup) vs 15 (Debian's pg_basebackup), $ROUNDS rounds"
total15=0; totalN=0
for round in $(seq 1 "$ROUNDS"); do
  t15=$(bringup 15 "$round"); tN=$(bringup "$MAJOR" "$round")
  echo "round $round: 15 ${t15} s, $MAJOR ${tN} s, ratio $(awk -v a="$tN" -v b="$t15" 'BEGIN { printf "%.2f", a / b }')"
  total15=$(awk -v a="$total15" -v b="$t15" 'BEGIN { print a + b }'); totalN=$(awk -v a="$totalN" -v b="$tN" 'BEGIN { print a + b }')
done
echo "all rounds: 15 ${total15} s, $MAJOR ${totalN} s, ratio $(awk -v a="$totalN" -v b="$total15" 'BEGIN { printf "%.2f", a / b }') (target: at most 1.2)"
