#!/bin/sh
# A chaos-suite job: the prompt is "MODE SLEEP_MS". Records every execution start as
# "JOB_ID ATTEMPT WORKER_ID" in $CHAOS_LOG (one short append: atomic), then:
#   ok     sleep, succeed with {"worker":..., "attempt":...}
#   throw  fail (exit 1) on attempts 1 and 2, succeed after
#   hang   sleep far past JOB_TIMEOUT_MS
#   crash  kill itself with SIGKILL on attempt 1, succeed after
read -r mode sleep_ms
echo "$JOB_ID $JOB_ATTEMPT $WORKER_ID" >> "$CHAOS_LOG"
sleep_s=$(awk "BEGIN { printf \"%.3f\", ${sleep_ms:-0} / 1000 }")
case "$mode" in
  throw) [ "$JOB_ATTEMPT" -lt 3 ] && { echo "planned failure on attempt $JOB_ATTEMPT" >&2; exit 1; } ;;
  hang) sleep 3600 ;;
  crash) [ "$JOB_ATTEMPT" -lt 2 ] && kill -9 $$ ;;
esac
sleep "$sleep_s"
printf '{"worker":"%s","attempt":%s}\n' "$WORKER_ID" "$JOB_ATTEMPT"
