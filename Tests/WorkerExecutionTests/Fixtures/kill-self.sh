#!/bin/sh
cat >/dev/null
kill -9 $$
