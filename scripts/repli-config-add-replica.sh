#!/usr/bin/env bash
# The seed's repli-config-add-replica.sh NAME PGDATA PORT (re-adding a crashed replica rebuilds it).
exec node "$(dirname "$0")/../bin/lab.js" replica add "$@"
