#ifndef MOBVIBE_PROCESS_CONTROL_H
#define MOBVIBE_PROCESS_CONTROL_H

/// Marks the calling process non-dumpable (Linux `prctl(PR_SET_DUMPABLE, 0)`): no core dump, and
/// its `/proc/<pid>/environ`, `mem` and the like readable, and ptrace allowed, only by root
/// (`CAP_SYS_PTRACE`), not by other processes of the same user such as a job's command.
/// Swift cannot call the variadic `prctl` itself. Returns 0, or -1 with `errno` set (and on
/// systems without `prctl`).
int mobvibe_set_undumpable(void);

/// 1 when the calling process is dumpable, 0 when not, -1 on error.
int mobvibe_dumpable(void);

#endif
