#!/bin/bash
# A recorded agent session replayed as the agent prints it: the JSONL file named by the payload's
# "fixture" key line by line on standard output, a progress line that is not JSON, and a line on
# standard error. The prompt on standard input is read and ignored.
cat > /dev/null
fixture=$(sed -n 's/.*"fixture" *: *"\([^"]*\)".*/\1/p' "$JOB_PAYLOAD_FILE")
dir=$(dirname "$0")
echo "replaying $fixture"
echo "agent warming up" >&2
cat "$dir/$fixture"
