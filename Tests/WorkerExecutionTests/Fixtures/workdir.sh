#!/bin/sh
# Prints its working directory and how many entries it holds, then leaves a file behind.
cat >/dev/null
printf '{"pwd":"%s","entries":%s}\n' "$(pwd)" "$(ls -A | wc -l)"
echo scratch > left-behind.txt
