#!/bin/sh
# Starts a grandchild that ignores SIGTERM, records both process ids in $PIDS_FILE, then hangs.
cat >/dev/null
( trap '' TERM; sleep 300 ) &
echo "$$ $!" > "$PIDS_FILE"
sleep 300
