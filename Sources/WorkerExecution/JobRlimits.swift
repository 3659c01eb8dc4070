/// The kernel's per-process resource limits (`setrlimit`) set on each attempt's command by
/// ``JobLauncher``; every process the command starts inherits them.
public struct JobRlimits: Sendable, Hashable {
    /// `RLIMIT_FSIZE`: the largest file the command may write (`JOB_DISK_LIMIT_MB`). A write past
    /// it fails and the writer gets `SIGXFSZ`, which ends it unless it catches the signal.
    public var fileBytes: Int?
    /// `RLIMIT_DATA`: each process's own heap and private writable mappings, the memory bound
    /// where no memory control group can be made (per process, not for the command's total).
    public var dataBytes: Int?
    /// `RLIMIT_NPROC`: the processes the command's user may have at once, the process bound
    /// where no pids control group can be made (counted over the whole user, as `JOB_USER` sees
    /// it; the kernel does not apply it to root).
    public var processes: Int?

    public init(fileBytes: Int? = nil, dataBytes: Int? = nil, processes: Int? = nil) {
        self.fileBytes = fileBytes
        self.dataBytes = dataBytes
        self.processes = processes
    }

    public var isEmpty: Bool { fileBytes == nil && dataBytes == nil && processes == nil }

    var launcherArguments: [String] {
        var arguments: [String] = []
        if let fileBytes { arguments += ["--rlimit", "fsize=\(fileBytes)"] }
        if let dataBytes { arguments += ["--rlimit", "data=\(dataBytes)"] }
        if let processes { arguments += ["--rlimit", "nproc=\(processes)"] }
        return arguments
    }
}
