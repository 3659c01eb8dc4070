#!/bin/sh
# Stands in for a worker-launch from before `--announce` (JobLauncher.check's tests): it refuses
# the option, as the C program refuses any it does not know.
for argument in "$@"; do
    [ "$argument" = "--" ] && break
    if [ "$argument" = "--announce" ]; then
        echo "worker-launch: unknown option --announce: Invalid argument" >&2
        exit 125
    fi
done
exit 0
