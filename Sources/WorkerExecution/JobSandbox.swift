import Foundation

/// The confinement of a job's command under bubblewrap (`JOB_SANDBOX=bubblewrap`,
/// docs/WORKER_SERVICE.md, "The sandbox").
///
/// The command is a coding agent acting on a stranger's prompt: it runs code nobody reviewed. So
/// it gets new user, PID, IPC, UTS and cgroup namespaces (and, with `JOB_NETWORK=none`, a network
/// namespace with only loopback); a read-only view of the system directories and of the `/etc`
/// files programs need; its workspace read-write at ``workspacePath``; a private `/tmp` and home
/// (size-bounded tmpfs); its own `/proc` and a minimal `/dev`. Nothing else of the host is there:
/// not the worker's files, `.env` or SQLite database, not another job's workspace, not the
/// worker's processes (so not `/proc/<worker>/environ`). This is what Codex on Linux and Claude
/// Code do with the same tool.
public struct JobSandbox: Sendable, Hashable {
    /// What the command may reach over the network (`JOB_NETWORK`).
    public enum Network: String, Sendable, CaseIterable {
        /// A network namespace of its own with only loopback: no database, no metadata address.
        case none
        /// The host's network.
        case host
    }

    /// The workspace's path inside the sandbox (the command's working directory).
    public static let workspacePath = "/workspace"
    /// Where the job's payload file is inside (`JOB_PAYLOAD_FILE`).
    public static let payloadPath = "/job/payload.json"
    /// Host directories mounted read-only at the same path (or recreated as the same symbolic
    /// link, on a merged-`/usr` system).
    static let systemDirectories = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    /// The `/etc` entries programs need (name resolution, TLS certificates, users, the dynamic
    /// linker's cache, Debian's alternatives, the time zone, system git/npm/pip settings), as
    /// the host has them: copied once into what the sandbox sees as `/etc` (``SandboxEtc``, only
    /// what every user may read). Few on purpose: the first list of 26, bound one by one, cost
    /// 6 ms of every command's start (`worker bench sandbox`).
    static let etcEntries = [
        "resolv.conf", "hosts", "nsswitch.conf", "passwd", "group", "ld.so.cache", "ssl", "pki",
        "alternatives", "localtime", "gitconfig", "npmrc", "pip.conf",
    ]

    /// The `bwrap` program.
    public var bwrap: String
    public var network: Network
    /// Host paths the command may read (`JOB_SANDBOX_RO_PATHS`), at the same path inside.
    public var readOnlyPaths: [String]
    /// Host paths the command may write (`JOB_SANDBOX_RW_PATHS`), at the same path inside.
    public var writablePaths: [String]
    /// The size bound of the private `/tmp` and of the home directory, each.
    public var tmpBytes: Int
    /// Whether commands start through `worker-launch` inside (``CommandStart``); off when the
    /// start-up trial found it cannot run there.
    public var startsThroughLauncher = true
    /// The ``etcEntries`` this host has (looked up once, not per command), bound one by one
    /// where their copy (``SandboxEtc``) could not be made.
    private var etcPresent: [String]
    /// The copy of the entries mounted as `/etc` (``SandboxEtc/staged``).
    private var etcCopy: String?

    public init(bwrap: String, network: Network = .none, readOnlyPaths: [String] = [], writablePaths: [String] = [], tmpBytes: Int = 1 << 30) {
        self.bwrap = bwrap
        self.network = network
        self.readOnlyPaths = readOnlyPaths
        self.writablePaths = writablePaths
        self.tmpBytes = tmpBytes
        self.etcPresent = Self.etcEntries.map { "/etc/\($0)" }.filter { FileManager.default.fileExists(atPath: $0) }
        self.etcCopy = SandboxEtc.staged
    }

    /// `bwrap` in `path`, if there is one.
    public static func locate(path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        for directory in (path ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/bwrap"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// bwrap's arguments, ending with `--`, for a command run in `workdir` (mounted at
    /// ``workspacePath``).
    /// - Parameters:
    ///   - payloadFile: mounted read-only at ``payloadPath``.
    ///   - program: the host path of the command's program: mounted read-only at the same path
    ///     when the system directories do not hold it.
    ///   - home: the command's `HOME`: an empty private directory inside.
    ///   - scratch: host directories for `/tmp` and home, when what the command writes there
    ///     counts towards its disk limit (`JOB_DISK_LIMIT_MB`); else each is a size-bounded tmpfs.
    ///   - launcher: the host path of `worker-launch`, which starts the command inside and says
    ///     when it does (``CommandStart``): mounted read-only at the same path, as `program` is.
    public func arguments(
        workdir: String, payloadFile: String?, program: String?, home: String?, scratch: (tmp: String, home: String)? = nil, launcher: String? = nil
    ) -> [String] {
        var arguments = baseArguments(network: network, tmp: scratch?.tmp)
        if let home, home.hasPrefix("/"), home != "/", !Self.isSystemPath(home), home != "/tmp" {
            if let scratch {
                arguments += ["--bind", scratch.home, home]
            } else {
                arguments += ["--size", String(tmpBytes), "--tmpfs", home]
            }
        }
        for program in [program, launcher].compactMap({ $0 }) where program.hasPrefix("/") && !Self.isSystemPath(program)
            && !(readOnlyPaths + writablePaths).contains(where: { Self.path(program, isWithin: $0) }) {
            arguments += ["--ro-bind", program, program]
        }
        for path in readOnlyPaths { arguments += ["--ro-bind", path, path] }
        for path in writablePaths { arguments += ["--bind", path, path] }
        arguments += ["--bind", workdir, Self.workspacePath]
        if let payloadFile { arguments += ["--ro-bind", payloadFile, Self.payloadPath] }
        // The root bwrap builds is a tmpfs: read-only, so that nothing but the workspace, /tmp and
        // home (each its own mount, size-bounded but the workspace) takes writes.
        arguments += ["--remount-ro", "/", "--chdir", Self.workspacePath, "--"]
        return arguments
    }

    /// bwrap's arguments, ending with `--`, for one of the worker's own tools (git, for the change
    /// summary) working on files the command controls: `paths` read-write at their own host
    /// paths, no network, nothing else of the host. A repository's configuration can name
    /// programs for git to run (a filter driver runs on `git add`): they run in here, not as the
    /// worker.
    func toolArguments(writable paths: [String], chdir: String) -> [String] {
        var arguments = baseArguments(network: .none, tmp: nil)
        for path in paths { arguments += ["--bind", path, path] }
        arguments += ["--remount-ro", "/", "--chdir", chdir, "--"]
        return arguments
    }

    /// The namespaces, the system directories and `/etc` entries, `/proc`, `/dev` and `/tmp` (a
    /// tmpfs, or the host directory `tmp`).
    private func baseArguments(network: Network, tmp: String?) -> [String] {
        var arguments = [
            "--die-with-parent", "--new-session",
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        ]
        if network == .none { arguments.append("--unshare-net") }
        let files = FileManager.default
        for directory in Self.systemDirectories {
            if let target = try? files.destinationOfSymbolicLink(atPath: directory) {
                arguments += ["--symlink", target, directory]
            } else if files.fileExists(atPath: directory) {
                arguments += ["--ro-bind", directory, directory]
            }
        }
        if let etcCopy {
            arguments += ["--ro-bind", etcCopy, "/etc"]
        } else {
            for entry in etcPresent {
                arguments += ["--ro-bind-try", entry, entry]
            }
        }
        // A worker running as root with no JOB_USER starts bwrap as root, and bwrap then keeps
        // every capability and maps the command to the host's root: it could remount /usr
        // read-write and replace the worker's own programs. Without capabilities it still writes
        // what root owns where nothing is read-only: /proc/sys (the host's core_pattern runs a
        // program of its choosing as root) and /proc/sysrq-trigger. So no capability, ever, and
        // those read-only (`-try`: a kernel may lack one).
        arguments += ["--cap-drop", "ALL", "--proc", "/proc"]
        for entry in Self.coveredProcEntries { arguments += ["--ro-bind-try", entry, entry] }
        // Masked with an empty regular file of the /etc copy: /dev/null bound there is a device
        // on a mount without devices, and reading it failed with EACCES instead of being empty.
        if let etcCopy {
            for entry in Self.maskedProcEntries { arguments += ["--ro-bind", "\(etcCopy)/\(SandboxEtc.emptyFileName)", entry] }
        }
        // bwrap's /dev is a tmpfs of half the machine's memory that the command could fill (past
        // JOB_SANDBOX_TMP_MB, and past an rlimit's bound: files are no process's memory): read-only
        // but its devices, with a /dev/shm of the /tmp's bound.
        arguments += ["--dev", "/dev", "--size", String(tmpBytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        arguments += tmp.map { ["--bind", $0, "/tmp"] } ?? ["--size", String(tmpBytes), "--tmpfs", "/tmp"]
        return arguments
    }

    /// The parts of `/proc` through which a process of uid 0 with no capabilities can still
    /// change the host (bwrap covers them only when it is set-uid): read-only in the sandbox.
    /// Docker's list: besides the four bwrap knows, `/proc/scsi` (`scsi remove-single-device`
    /// checks no capability: it detaches a host disk), `/proc/fs`, `/proc/acpi`, `/proc/asound`,
    /// `/proc/driver` and `/proc/mtrr`.
    static let coveredProcEntries = [
        "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus",
        "/proc/scsi", "/proc/fs", "/proc/acpi", "/proc/asound", "/proc/driver", "/proc/mtrr",
    ]
    /// What Docker hides as well (the kernel's memory image, every key's description, timers and
    /// the scheduler's state of the whole host): empty in the sandbox (where the /etc copy exists).
    /// (Those this kernel has: bwrap cannot mount over a missing one, and `-try` is about the source.)
    static let maskedProcEntries = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats"]
        .filter { FileManager.default.fileExists(atPath: $0) }

    /// Whether `path` is inside the system directories mounted for every command.
    static func isSystemPath(_ path: String) -> Bool {
        systemDirectories.contains { Self.path(path, isWithin: $0) }
    }

    static func path(_ path: String, isWithin directory: String) -> Bool {
        path == directory || path.hasPrefix(directory.hasSuffix("/") ? directory : directory + "/")
    }
}
