#!/bin/sh
# Prints a JSON result built from the job's environment.
cat >/dev/null
printf '{"job":"%s","attempt":%s,"payload":%s}\n' "$JOB_ID" "$JOB_ATTEMPT" "$(cat "$JOB_PAYLOAD_FILE")"
