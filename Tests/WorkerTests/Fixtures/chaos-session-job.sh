#!/bin/sh
# A chaos-suite turn of a coding session: the prompt is "ok SLEEP_MS TURN". Appends
# "start JOB_ID SESSION_ID TURN ATTEMPT WORKER_ID NANOSECONDS" to $CHAOS_LOG when it starts and
# the same line with "end" when it is done (each one short append: atomic), so the test can
# tell whether two turns of one session ever ran at the same time.
read -r mode sleep_ms turn
echo "start $JOB_ID $SESSION_ID $turn $JOB_ATTEMPT $WORKER_ID $(date +%s%N)" >> "$CHAOS_LOG"
sleep "$(awk "BEGIN { printf \"%.3f\", ${sleep_ms:-0} / 1000 }")"
echo "end $JOB_ID $SESSION_ID $turn $JOB_ATTEMPT $WORKER_ID $(date +%s%N)" >> "$CHAOS_LOG"
printf '{"turn":%s,"worker":"%s"}\n' "$turn" "$WORKER_ID"
