// worker-launch: starts one attempt of a job's command inside its limits, then becomes it.
//
//   worker-launch [--join FILE]... [--rlimit fsize|data|nproc=N]... [--user UID:GID[:G1,G2...]] [--announce] -- PROGRAM ARGS...
//   worker-launch --version
//
// In this order: writes its own pid into each FILE (the attempt's control groups' cgroup.procs,
// so that no process of the command ever runs outside them), sets each resource limit (soft and
// hard), drops to the user (supplementary groups, group, user; joining the groups first, as the
// worker's own user, is what lets it join cgroup v2 groups it could not join as the user), and
// execs PROGRAM (looked up in PATH when it has no '/'). Nothing runs between these steps and the
// exec, so the command inherits exactly this: the same pid, the limits, the user.
//
// The worker starts it (CommandHandler, JobLauncher.swift) rather than a shell, which a
// distroless image does not have and whose `ulimit` units vary. A step that fails ends it with
// status 125 and one line on standard error saying which, before the command ever starts.
//
// --announce: once every step has passed and PROGRAM is found executable, the line of
// START_MARKER goes to standard error, then the exec. The worker (CommandHandler) reads it as
// "the command itself was reached": a run that ends without it failed in what starts the command
// (this program, or bubblewrap setting up the sandbox around it), which is the worker's fault,
// not the job's. Nothing the command does can take the line back, so a command cannot pass its
// own failure off as the worker's. (Run inside the sandbox, as bwrap's program, it announces
// that the sandbox is up.)
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

// JobLauncher.startMarker in the worker: a line no program prints by chance.
#define START_MARKER "\001mobvibe-worker-launch: the command starts\n"

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "worker-launch: %s%s%s%s%s\n", what, detail ? " " : "", detail ? detail : "",
            errno ? ": " : "", errno ? strerror(errno) : "");
    return 125;
}

static int parse_number(const char *text, unsigned long long *value) {
    char *end = NULL;
    errno = 0;
    *value = strtoull(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' ? 0 : -1;
}

static int join(const char *file) {
    FILE *handle = fopen(file, "w");
    if (!handle) return -1;
    int written = fprintf(handle, "%d\n", (int)getpid());
    int closed = fclose(handle);
    return written > 0 && closed == 0 ? 0 : -1;
}

static int limit(const char *setting) {
    const char *equals = strchr(setting, '=');
    if (!equals) { errno = EINVAL; return -1; }
    size_t length = (size_t)(equals - setting);
    int resource;
    if (length == 5 && strncmp(setting, "fsize", 5) == 0) resource = RLIMIT_FSIZE;
    else if (length == 4 && strncmp(setting, "data", 4) == 0) resource = RLIMIT_DATA;
    else if (length == 5 && strncmp(setting, "nproc", 5) == 0) resource = RLIMIT_NPROC;
    else { errno = EINVAL; return -1; }
    unsigned long long value;
    if (parse_number(equals + 1, &value) != 0) { errno = EINVAL; return -1; }
    struct rlimit bound = { .rlim_cur = (rlim_t)value, .rlim_max = (rlim_t)value };
    return setrlimit(resource, &bound);
}

static int become(const char *user) {
    // UID:GID[:G1,G2,...]
    char copy[4096];
    if (strlen(user) >= sizeof copy) { errno = E2BIG; return -1; }
    strcpy(copy, user);
    char *uid_text = strtok(copy, ":"), *gid_text = strtok(NULL, ":"), *groups_text = strtok(NULL, ":");
    unsigned long long uid, gid;
    if (!uid_text || !gid_text || parse_number(uid_text, &uid) != 0 || parse_number(gid_text, &gid) != 0) {
        errno = EINVAL;
        return -1;
    }
    gid_t groups[256];
    size_t count = 0;
    for (char *group = groups_text ? strtok(groups_text, ",") : NULL; group && count < 256; group = strtok(NULL, ",")) {
        unsigned long long value;
        if (parse_number(group, &value) != 0) { errno = EINVAL; return -1; }
        groups[count++] = (gid_t)value;
    }
    if (setgroups(count, groups) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0) return -1;
    // A process that could regain the worker's user must not start the command.
    if (uid != 0 && setuid(0) == 0) { errno = EPERM; return -1; }
    return 0;
}

// Whether `program` names an executable regular file, as execvp would look it up (PATH when it
// has no '/'): checked before --announce, so that a program missing from the sandbox is the
// worker's fault (no marker) rather than the job's.
static int executable(const char *program) {
    struct stat info;
    if (strchr(program, '/')) {
        if (access(program, X_OK) != 0 || stat(program, &info) != 0) return 0;
        if (!S_ISREG(info.st_mode)) { errno = EACCES; return 0; }
        return 1;
    }
    const char *path = getenv("PATH");
    // What execvp searches when PATH is unset (glibc: confstr(_CS_PATH)).
    if (!path) path = "/bin:/usr/bin";
    char candidate[4096];
    // An empty entry (an empty PATH too) is the current directory, as for execvp.
    for (;;) {
        const char *end = strchr(path, ':');
        size_t length = end ? (size_t)(end - path) : strlen(path);
        int written = length == 0
            ? snprintf(candidate, sizeof candidate, "%s", program)
            : snprintf(candidate, sizeof candidate, "%.*s/%s", (int)length, path, program);
        if (written > 0 && (size_t)written < sizeof candidate && access(candidate, X_OK) == 0
            && stat(candidate, &info) == 0 && S_ISREG(info.st_mode)) {
            return 1;
        }
        if (!end) break;
        path = end + 1;
    }
    errno = ENOENT;
    return 0;
}

int main(int argc, char **argv) {
    // What the sandbox's start-up trial runs where the system has no `true` (a distroless image).
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        puts("worker-launch 1");
        return 0;
    }
    int index = 1;
    const char *user = NULL;
    int announce = 0;
    for (; index < argc; index++) {
        const char *option = argv[index];
        if (strcmp(option, "--") == 0) { index++; break; }
        if (strcmp(option, "--announce") == 0) { announce = 1; continue; }
        if (index + 1 >= argc) { errno = EINVAL; return fail("option without a value:", option); }
        const char *value = argv[++index];
        errno = 0;
        if (strcmp(option, "--join") == 0) {
            if (join(value) != 0) return fail("cannot join the control group", value);
        } else if (strcmp(option, "--rlimit") == 0) {
            if (limit(value) != 0) return fail("cannot set the resource limit", value);
        } else if (strcmp(option, "--user") == 0) {
            user = value;
        } else {
            errno = EINVAL;
            return fail("unknown option", option);
        }
    }
    if (index >= argc) { errno = EINVAL; return fail("no program after --", NULL); }
    errno = 0;
    if (user && become(user) != 0) return fail("cannot become the user", user);
    if (announce) {
        errno = 0;
        if (!executable(argv[index])) {
            int status = errno == ENOENT ? 127 : 126;
            fail("cannot start", argv[index]);
            return status;
        }
        const char marker[] = START_MARKER;
        if (write(STDERR_FILENO, marker, sizeof marker - 1) != (ssize_t)(sizeof marker - 1)) {
            return fail("cannot announce the command's start on standard error", NULL);
        }
    }
    errno = 0;
    execvp(argv[index], &argv[index]);
    int status = errno == ENOENT ? 127 : 126;
    fail("cannot start", argv[index]);
    return status;
}
