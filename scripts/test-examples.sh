#!/usr/bin/env bash
# Proves the package from outside: packs pglab (`npm pack`, from the built dist/), copies examples/app-tests
# into a temp dir, installs the tarball there with the example's own dependencies from the registry, and
# runs its tests (node:test, vitest, tsc). Prints the tarball's size and file count.
#   bash scripts/test-examples.sh            (after `npm run build`)
set -euo pipefail
# Run from a test file (test/examples.test.ts): the example's own node --test must not take itself for a subtest.
unset NODE_TEST_CONTEXT
export NO_COLOR=1
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/pglab-examples-XXXXXX)"
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
cd "$root"
test -f dist/index.d.ts || { echo "test-examples: dist/ is not built: run npm run build first" >&2; exit 2; }
# --ignore-scripts: dist/ is built already (prepack would build it again).
tarball="$(npm pack --ignore-scripts --silent --pack-destination "$work" | tail -1)"
echo "test-examples: $tarball, $(stat -c %s "$work/$tarball") bytes, $(tar -tzf "$work/$tarball" | wc -l) files"
cp -r examples/app-tests "$work/app"
cd "$work/app"
npm install --prefer-offline --no-audit --no-fund --loglevel=error "$work/$tarball" >/dev/null
npm install --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null
npm test
