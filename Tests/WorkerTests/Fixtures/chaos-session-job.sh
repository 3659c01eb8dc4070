#!/bin/bash
# A chaos-suite turn of a coding session: the prompt is "ok SLEEP_MS TURN". Appends
# "start JOB_ID SESSION_ID TURN ATTEMPT WORKER_ID MICROSECONDS" to $CHAOS_LOG when it starts and
# the same line with "end" when it is done (each one short append: atomic), so the test can
# tell whether two turns of one session ever ran at the same time. Bash builtins only but
# `sleep` (EPOCHREALTIME for the clock): thousands of turns run beside the rest of the suite.
read -r mode sleep_ms turn
echo "start $JOB_ID $SESSION_ID $turn $JOB_ATTEMPT $WORKER_ID ${EPOCHREALTIME/./}" >> "$CHAOS_LOG"
ms=${sleep_ms:-0}
if [ "$ms" -gt 0 ]; then printf -v seconds '0.%03d' "$ms"; sleep "$seconds"; fi
echo "end $JOB_ID $SESSION_ID $turn $JOB_ATTEMPT $WORKER_ID ${EPOCHREALTIME/./}" >> "$CHAOS_LOG"
printf '{"turn":%s,"worker":"%s"}\n' "$turn" "$WORKER_ID"
