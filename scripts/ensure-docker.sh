#!/bin/sh
# Makes sure a Docker engine answers `docker info`, for the container runtime (issue 6) and its tests.
# Idempotent: does nothing when an engine already answers (including a remote one through DOCKER_HOST).
#
#   scripts/ensure-docker.sh            # install docker.io if missing, start dockerd if needed, wait
#   PGLAB_DOCKERD_LOG=/path/to/log      # where a dockerd started here writes (default below)
#   PGLAB_DOCKER_WAIT_SECONDS=60        # how long to wait for the engine to answer
#
# Findings on this kind of VM (Debian 12, kernel 6.18, no systemd as PID 1, cgroup v1, root on ext4):
# - Debian's docker.io (20.10) installs fine; its postinst cannot start the service (policy-rc.d, no
#   systemd), so dockerd is started here in the background, as root.
# - A /usr/local/bin/docker client (28.x) may shadow Debian's; it negotiates down to the 20.10 API.
# - overlay2 works on this ext4 root (checked); vfs also starts here (checked with a second dockerd)
#   and is the fallback when overlay2 cannot mount (nested overlay, old kernels). vfs copies whole
#   layers, which is fine for our ~90 MB image.
# - With default options dockerd creates docker0, sets the iptables FORWARD policy to DROP and turns
#   net.ipv4.ip_forward on: that changes the host for everything else (network namespaces that tests
#   create route through FORWARD). pglab nodes use host networking only, so dockerd runs here with
#   --iptables=false --ip-forward=false --ip-masq=false --bridge=none: no bridge, no firewall changes.
#   Side effect: containers without `--network host` get no network at all (what we want).
# - No registry is reachable: images are built locally (scripts/build-image.sh); testcontainers'
#   reaper (ryuk) cannot be pulled: pglab's containers use withAutoCleanup(false) (no reaper; nodes
#   must outlive the CLI anyway) and are removed by label.
# - /.dockerenv exists on these VMs, so testcontainers looks for the `bridge` network's gateway, which
#   --bridge=none removes: src/runtime/docker/engine.ts sets TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1.
set -eu

log_file=${PGLAB_DOCKERD_LOG:-/var/log/pglab-dockerd.log}
wait_seconds=${PGLAB_DOCKER_WAIT_SECONDS:-60}

say() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

# Polls `docker info` every 0.25 s for at most $1 seconds; fails early when the dockerd we started died.
wait_for_engine() {
  limit=$(( $1 * 4 ))
  tries=0
  while [ "$tries" -lt "$limit" ]; do
    engine_answers && return 0
    if [ -n "${dockerd_pid:-}" ] && ! kill -0 "$dockerd_pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.25
    tries=$(( tries + 1 ))
  done
  return 1
}

install_docker() {
  if command -v dockerd >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "dockerd is missing and this is not root: install Debian's docker.io (sudo apt-get install docker.io)"
    exit 1
  fi
  say "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends docker.io >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends docker.io >/dev/null
  }
}

# Starts dockerd detached from this shell (setsid + nohup) so it outlives the caller; $1 = storage driver.
start_dockerd() {
  say "starting dockerd (storage driver $1), log in $log_file"
  mkdir -p "$(dirname "$log_file")"
  setsid nohup dockerd \
    --storage-driver="$1" \
    --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    >>"$log_file" 2>&1 </dev/null &
  dockerd_pid=$!
}

if engine_answers; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  say "DOCKER_HOST=$DOCKER_HOST does not answer 'docker info': start that engine, or unset DOCKER_HOST to use a local one"
  exit 1
fi
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  install_docker
fi
if [ "$(id -u)" -ne 0 ]; then
  say "no Docker engine answers and only root can start dockerd here: run this script as root, or start the docker service"
  exit 1
fi
if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null 2>&1; then
  # A dockerd is already starting (another caller): wait for it rather than starting a second one.
  if wait_for_engine "$wait_seconds"; then exit 0; fi
  say "a dockerd is running but does not answer after ${wait_seconds}s: see $log_file"
  exit 1
fi

start_dockerd overlay2
if wait_for_engine "$wait_seconds"; then
  exit 0
fi
if kill -0 "$dockerd_pid" 2>/dev/null; then
  say "dockerd (pid $dockerd_pid) does not answer after ${wait_seconds}s: see $log_file"
  exit 1
fi
say "dockerd exited with overlay2; retrying with vfs"
start_dockerd vfs
if wait_for_engine "$wait_seconds"; then
  exit 0
fi
say "dockerd did not come up (overlay2, then vfs): see the end of $log_file"
tail -n 20 "$log_file" >&2 || true
exit 1
