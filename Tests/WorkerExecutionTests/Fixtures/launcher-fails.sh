#!/bin/sh
# Stands in for worker-launch failing a step before the command (CommandHandler's tests): its
# message and status 125, no start line.
echo "worker-launch: cannot become the user 0:0: Operation not permitted" >&2
exit 125
