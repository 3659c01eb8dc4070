#!/bin/sh
# Stands in for worker-launch that passed its steps (CommandHandler's tests): its start line on
# standard error, then the command after `--`.
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
printf '\001mobvibe-worker-launch: the command starts\n' >&2
exec "$@"
