#!/bin/sh
cat >/dev/null
echo "something went wrong" >&2
exit 3
