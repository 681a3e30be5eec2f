#!/usr/bin/env bash
# Times `lab master start` + 2 x `lab replica add` on the process runtime and on the docker runtime, in
# one invocation, alternating which goes first each round (ROUNDS, default 3), each on free ports in a
# fresh temporary lab dir that is destroyed (untimed) before the next. Prints every round and the medians.
# Needs root, PostgreSQL 15 and a Docker engine with the local image (scripts/ensure-docker.sh,
# scripts/build-image.sh; LAB_IMAGE picks another image).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
IMAGE=${LAB_IMAGE:-$(scripts/build-image.sh 2>/dev/null | tail -n 1)}
ROOT=$(mktemp -d /tmp/pglab-bench-runtime-XXXXXX); chmod 755 "$ROOT"
freeport() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
cleanup() {
  for dir in "$ROOT"/*/; do [ -f "$dir/lab.json" ] && node bin/lab.js --lab-dir "$dir" destroy --yes >/dev/null 2>&1 || true; done
  rm -rf "$ROOT"
}
trap cleanup EXIT

# One timed build: prints the seconds master start + 2 replica adds took on runtime $1.
build() {
  local runtime=$1 dir="$ROOT/$1-$2" m r1 r2 t0 t1
  m=$(freeport); r1=$(freeport); r2=$(freeport)
  local image_args=(); [ "$runtime" = docker ] && image_args=(--image "$IMAGE")
  t0=$(date +%s.%N)
  node bin/lab.js --lab-dir "$dir" --runtime "$runtime" master start --port "$m" "${image_args[@]}" >/dev/null 2>&1
  node bin/lab.js --lab-dir "$dir" replica add replica1 "$dir/replica1" "$r1" >/dev/null 2>&1
  node bin/lab.js --lab-dir "$dir" replica add replica2 "$dir/replica2" "$r2" >/dev/null 2>&1
  t1=$(date +%s.%N)
  node bin/lab.js --lab-dir "$dir" destroy --yes >/dev/null 2>&1
  echo "$t1 - $t0" | bc
}

process_times=(); docker_times=()
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order=(process docker); else order=(docker process); fi
  for runtime in "${order[@]}"; do
    seconds=$(build "$runtime" "$round")
    printf 'round %d %-7s master start + 2 x replica add: %.2f s\n' "$round" "$runtime" "$seconds"
    if [ "$runtime" = process ]; then process_times+=("$seconds"); else docker_times+=("$seconds"); fi
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p=$(median "${process_times[@]}"); d=$(median "${docker_times[@]}")
awk -v p="$p" -v d="$d" -v n="$ROUNDS" -v img="$IMAGE" 'BEGIN {
  printf "median of %d: process %.2f s, docker %.2f s (image %s), docker / process %.2f\n", n, p, d, img, d / p }'
