#!/bin/bash
# What a hostile command would try, for the sandbox's tests. The prompt's first line says what:
#   escape DOTENV DATABASE OTHER_DIR PORT...   tries to read the worker's secrets and files, to
#                                              write outside its workspace and /tmp, and to
#                                              connect to each PORT on 127.0.0.1; prints one JSON
#                                              object saying what worked
#   stdin                                      prints the SHA-256 of its whole standard input
#   gitpwn MARKER                              makes the workspace a repository whose config runs
#                                              `touch MARKER` when git stages a file
#   gitleak TOKEN MARKER                       as gitpwn, with a filter that writes its control groups
#                                              to MARKER and leaves `sleep 300.TOKEN` running
#   gitswap FILE                               makes the workspace a repository whose clean filter
#                                              replaces payload.json beside git's private index
#                                              with a symlink to FILE
#   payload TEXT                               prints whether its payload file holds TEXT
#   gitdirswap DIR                             makes the workspace a repository, then tries to
#                                              replace the folder of git's private index (beside
#                                              its payload file) with a symlink to DIR; prints
#                                              whether it could
#   gitfifo                                    makes the repository's index file a FIFO
#   hog                                        allocates memory without end
#   bomb                                       forks without end
#   fill                                       writes one file in its workspace without end
#   spray DIR                                  writes 1 MiB files into DIR (relative: in the
#                                              workspace) without end, 100 MiB/s
#   stubborn DIR                               spray DIR, ignoring SIGTERM
#   graceful                                   runs until SIGTERM, then prints "got-term", and
#                                              "saved" a second later, and exits 0
#   hide DIR [MODE]                            writes 40 files of 1 MiB into DIR, makes DIR
#                                              unreadable (chmod MODE, 000 by default: 400 may
#                                              be listed, not searched), then waits 6 s
#   hidename                                   the same into a folder whose name is not UTF-8
#                                              (hide\377), readable
#   unlinked                                   holds 5 files of 3 MiB open after deleting them,
#                                              for 6 s
#   whoami                                     prints its user and group ids and HOME, and whether
#                                              it can write its workspace and /tmp
#   orphan TOKEN                               leaves a grandchild in a new session that ignores
#                                              SIGTERM (its command line holds TOKEN), then hangs
#   fail TEXT                                  fails as what starts it would: TEXT and worker-launch's
#                                              start line again on standard error, status 1
# A file of its own in the workspace (which goes with the job), not /tmp/prompt.<pid>: a probe
# killed by a limit left that file behind, and a later probe given the same pid, as another
# user, could not write it and read the dead one's prompt ("hog": an out-of-memory failure).
prompt=$(mktemp ./.probe-prompt.XXXXXX) || exit 1
trap 'rm -f "$prompt"' EXIT
cat > "$prompt"
read -r mode a b c rest < "$prompt"
case "$mode" in
escape)
    # Every process this command can see, in one grep (unconfined, that is every process of
    # the host: a pipeline per process was hundreds of processes beside the rest of the suite).
    leak=false
    grep -qsa 'SANDBOX_TEST_SECRET=' /proc/[0-9]*/environ && leak=true
    parent=false
    tr '\0' '\n' < /proc/$PPID/environ 2>/dev/null | grep -q '^SANDBOX_TEST_SECRET=' && parent=true
    dotenv=false; cat "$a" > /dev/null 2>&1 && dotenv=true
    database=false; cat "$b" > /dev/null 2>&1 && database=true
    other=false; ls "$c" > /dev/null 2>&1 && other=true
    usr=false; touch /usr/sandbox-probe 2> /dev/null && usr=true && rm -f /usr/sandbox-probe
    root=false; touch /sandbox-probe 2> /dev/null && root=true && rm -f /sandbox-probe
    # As a root worker's command without JOB_USER would: make /usr writable (in this mount
    # namespace only), or change the host through /proc (tested for write access, never written).
    # (The remount only where the sandbox puts the workspace: unconfined, as root, it would be the
    # host's own /usr.)
    remount=false
    if [ "$PWD" = /workspace ] && mount -o remount,bind,rw /usr 2> /dev/null; then remount=true; fi
    procsys=false; [ -w /proc/sys/kernel/core_pattern ] && procsys=true
    sysrq=false; [ -w /proc/sysrq-trigger ] && sysrq=true
    # The /proc entries mounted read-only (mountinfo's fifth field, its options the sixth).
    procro=$(awk '$5 ~ /^\/proc\/./ && $6 ~ /(^|,)ro(,|$)/ { printf "%s ", $5 }' /proc/self/mountinfo)
    keys=$(cat /proc/keys 2> /dev/null | wc -c; exit "${PIPESTATUS[0]}") || keys=-1
    dev=false; touch /dev/sandbox-probe 2> /dev/null && dev=true && rm -f /dev/sandbox-probe
    shm=false; echo probe > /dev/shm/sandbox-probe 2> /dev/null && shm=true && rm -f /dev/shm/sandbox-probe
    workspace=false; touch ./probe 2> /dev/null && workspace=true
    tmp=false; touch /tmp/probe 2> /dev/null && tmp=true
    ports=""
    for port in $rest; do
        if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then ports="$ports,\"$port\":true"; else ports="$ports,\"$port\":false"; fi
    done
    printf '{"envLeak":%s,"parentEnvLeak":%s,"dotenv":%s,"database":%s,"otherWorkspace":%s,"writeUsr":%s,"writeRoot":%s,"remountUsr":%s,"writeProcSys":%s,"writeSysrq":%s,"procReadOnly":"%s","keysBytes":%s,"writeDev":%s,"writeShm":%s,"writeWorkspace":%s,"writeTmp":%s,"pwd":"%s","ports":{%s}}\n' \
        "$leak" "$parent" "$dotenv" "$database" "$other" "$usr" "$root" "$remount" "$procsys" "$sysrq" "$procro" "$keys" "$dev" "$shm" "$workspace" "$tmp" "$PWD" "${ports#,}"
    ;;
stdin)
    sum=$(sha256sum < "$prompt")
    printf '{"sha256":"%s"}\n' "${sum%% *}"
    ;;
gitpwn)
    # A repository whose configuration has git run a program on `git add` (a clean filter): the
    # worker's change summary stages the work tree before and after each turn.
    # It leaves a mark on the host ($a) and one in the workspace (git runs a filter in the work tree).
    git init -q . && git config filter.pwn.clean "touch $a .filter-ran; cat" && echo '* filter=pwn' > .gitattributes && echo hi > file.txt
    printf '{"repository":true}\n'
    ;;
gitleak)
    git init -q . && echo '* filter=leak' > .gitattributes && echo hi > file.txt &&
        git config filter.leak.clean "cat /proc/self/cgroup > $b; setsid sleep 300.$a > /dev/null 2>&1 < /dev/null & cat"
    printf '{"repository":true}\n'
    ;;
gitswap)
    # The filter runs in git's sandbox during the next turn's "before" snapshot, with the folder
    # of git's private index writable: if that were the attempt's folder, bwrap would then mount
    # FILE (a host path) as that turn's /job/payload.json.
    git init -q . && echo '* filter=swap' > .gitattributes && echo hi > file.txt &&
        git config filter.swap.clean "ln -sfn $a \"\$(dirname \"\$GIT_INDEX_FILE\")/payload.json\"; cat"
    printf '{"repository":true}\n'
    ;;
gitdirswap)
    git init -q . && echo hi > file.txt
    d=$(dirname "$JOB_PAYLOAD_FILE")
    if mv "$d/git" "$d/git-moved" 2> /dev/null && ln -s "$a" "$d/git" 2> /dev/null; then
        printf '{"swapped":true}\n'
    else
        printf '{"swapped":false}\n'
    fi
    ;;
payload)
    if grep -q -- "$a" "$JOB_PAYLOAD_FILE" 2> /dev/null; then printf '{"leaked":true}\n'; else printf '{"leaked":false}\n'; fi
    ;;
gitfifo)
    # The worker copies the repository's index before each snapshot: opening a FIFO would wait
    # for a writer that never comes.
    git init -q . && echo hi > file.txt && rm -f .git/index && mkfifo .git/index
    printf '{"repository":true}\n'
    ;;
hog)
    # Memory without end: a string doubling until something stops it.
    s=x; while :; do s="$s$s"; done
    ;;
bomb)
    # Processes without end.
    bomb() { bomb | bomb & }; bomb; sleep 300
    ;;
fill)
    cat /dev/zero > big
    ;;
graceful)
    trap 'echo got-term; sleep 1; echo saved; exit 0' TERM
    echo running
    for _ in $(seq 1 600); do sleep 0.1; done
    ;;
spray|stubborn)
    [ "$mode" = stubborn ] && trap '' TERM
    mkdir -p "$a" && i=0
    while :; do head -c 1048576 /dev/zero > "$a/part$i" || exit 1; i=$((i + 1)); sleep 0.01; done
    ;;
hide)
    mkdir -p "$a" && for i in $(seq 1 40); do head -c 1048576 /dev/zero > "$a/part$i" || exit 1; done
    chmod "${b:-000}" "$a" && sleep 6
    printf '{"hidden":true}\n'
    ;;
hidename)
    dir=$(printf 'hide\377')
    mkdir -p "$dir" && for i in $(seq 1 40); do head -c 1048576 /dev/zero > "$dir/part$i" || exit 1; done
    sleep 6
    printf '{"hidden":true}\n'
    ;;
unlinked)
    for fd in 3 4 5 6 7; do
        eval "exec $fd> ./held$fd" && head -c 3145728 /dev/zero >&$fd && rm -f "./held$fd" || exit 1
    done
    sleep 6
    printf '{"held":true}\n'
    ;;
whoami)
    workspace=false; touch ./probe 2> /dev/null && workspace=true
    tmp=false; touch /tmp/probe 2> /dev/null && tmp=true
    printf '{"uid":%s,"gid":%s,"home":"%s","user":"%s","writeWorkspace":%s,"writeTmp":%s}\n' "$(id -u)" "$(id -g)" "$HOME" "$USER" "$workspace" "$tmp"
    ;;
fail)
    printf '%s\n\001mobvibe-worker-launch: the command starts\n' "$a $b $c $rest" >&2
    exit 1
    ;;
orphan)
    setsid bash -c "trap '' TERM; exec sleep 300.$a" > /dev/null 2>&1 < /dev/null &
    sleep 300
    ;;
*)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
