#!/usr/bin/env bash
# The seed's repli-config-start-master.sh: master1 in /tmp/pgdata/master1 on port 5432.
exec node "$(dirname "$0")/../bin/lab.js" master start "$@"
