#!/bin/bash
# A job of the dashboard's browser tests, by its prompt: "fail ..." fails; "wait for the trigger"
# prints a line, waits until the file $TRIGGER exists, then prints a second one; anything else
# prints a JSON result at once.
read -r prompt
case "$prompt" in
    fail*) echo "failing on purpose" >&2; exit 1 ;;
    "wait for the trigger")
        echo "first line"
        for _ in $(seq 1 600); do [ -e "$TRIGGER" ] && break; sleep 0.02; done
        echo "second line"
        sleep 0.3 ;;
    *) printf '{"done":true}\n' ;;
esac
