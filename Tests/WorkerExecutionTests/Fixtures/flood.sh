#!/bin/sh
# Writes 100 MB to standard output and 10 MB to standard error.
cat >/dev/null
head -c 10000000 /dev/zero | tr '\0' 'e' >&2 &
head -c 100000000 /dev/zero | tr '\0' 'a'
wait
