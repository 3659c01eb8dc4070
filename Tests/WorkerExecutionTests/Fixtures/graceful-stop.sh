#!/bin/sh
# An agent that saves its work when asked to stop: on SIGTERM it prints two lines (the second
# after a pause), writes $MARKER_FILE and exits 0. Until then it waits.
cat >/dev/null
trap 'echo got-term; sleep 0.3; echo saved; echo saved > "$MARKER_FILE"; exit 0' TERM
echo ready
: > "$MARKER_FILE.ready"
sleep 300 &
wait
