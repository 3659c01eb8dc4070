#!/bin/bash
# A job of the dashboard's browser tests, by its prompt: "fail ..." fails; "wait for the trigger"
# prints a line, waits until the file $TRIGGER exists, then prints a second one; "long first
# attempt" prints 2,100 lines and fails its first attempt, and in a later one waits for
# $TRIGGER.retry, then prints "second attempt line"; "slow to stop" runs until SIGTERM, then
# prints "stopping" and "stopped" a second apart; anything else prints a JSON result at once.
read -r prompt
case "$prompt" in
    fail*) echo "failing on purpose" >&2; exit 1 ;;
    "long first attempt")
        if [ "$JOB_ATTEMPT" = 1 ]; then seq 1 2100; exit 1; fi
        for _ in $(seq 1 1500); do [ -e "$TRIGGER.retry" ] && break; sleep 0.02; done
        echo "second attempt line" ;;
    "slow to stop")
        trap 'echo stopping; sleep 1; echo stopped; exit 0' TERM
        echo "running until stopped"
        for _ in $(seq 1 600); do sleep 0.1; done ;;
    "wait for the trigger")
        echo "first line"
        for _ in $(seq 1 600); do [ -e "$TRIGGER" ] && break; sleep 0.02; done
        echo "second line"
        sleep 0.3 ;;
    *) printf '{"done":true}\n' ;;
esac
