import Foundation
import Synchronization

/// Control groups for the commands' limits (``JobLimits``): one group per attempt under a group
/// of this worker's, on cgroup v1 (a hierarchy per controller, as on this project's CI machine)
/// or v2 (one unified hierarchy).
///
/// A command joins its group before it starts: it is launched through `worker-launch`
/// (``JobLauncher``), which writes its own pid into the group and then `exec`s the command (or
/// bwrap), so no process of the command ever runs outside it. After the command, the group's counters say whether a limit
/// stopped it (`oom_kill`, the pids controller's `max` events); then the group is removed.
public struct JobCgroups: Sendable, Hashable {
    enum Layout: Sendable, Hashable {
        /// Per controller, the worker's group directory (`nil`: the controller is not available,
        /// or not needed).
        case v1(memory: String?, pids: String?, cpu: String?, cpuacct: String?, freezer: String?)
        /// The worker's group directory in the unified hierarchy.
        case v2(String)
    }

    let layout: Layout
    public let limits: JobLimits

    /// Where the cgroup file systems are mounted.
    public static let mountPoint = "/sys/fs/cgroup"

    /// Sets up this worker's group for `limits` and for measuring each attempt (CPU time, peak
    /// memory), or says why that cannot be done here. Groups that dead workers left behind are
    /// removed first.
    /// - Parameter name: the worker's group name, `mobvibe-worker-<pid>`.
    public static func prepare(limits: JobLimits, name: String, root: String = mountPoint) -> Result<JobCgroups, JobCgroupsUnavailable> {
        let files = FileManager.default
        // The freezer first: it stops a dead worker's processes all at once (and thaws any it left frozen).
        for hierarchy in ["\(root)/freezer", root, "\(root)/memory", "\(root)/pids", "\(root)/cpu", "\(root)/cpuacct"] { removeAbandoned(in: hierarchy) }
        func makeGroup(_ path: String) -> String? {
            do {
                if !files.fileExists(atPath: path) { try files.createDirectory(atPath: path, withIntermediateDirectories: false) }
                return access(path + "/cgroup.procs", W_OK) == 0 ? path : nil
            } catch {
                return nil
            }
        }
        if files.fileExists(atPath: "\(root)/cgroup.controllers"), !files.fileExists(atPath: "\(root)/memory") {
            // v2: the controllers must be enabled for the children of the worker's group's parent.
            let available = (try? String(contentsOfFile: "\(root)/cgroup.controllers", encoding: .utf8)) ?? ""
            // memory for the peak too; cpu.stat (CPU time) is in every group.
            let needed = ["memory"] + (limits.pids != nil ? ["pids"] : []) + (limits.cpuCores != nil ? ["cpu"] : [])
            let missing = needed.filter { !available.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.contains($0) }
            guard missing.isEmpty else { return .failure(JobCgroupsUnavailable("cgroup v2 without the \(missing.joined(separator: ", ")) controller")) }
            guard Self.write(needed.map { "+\($0)" }.joined(separator: " "), to: "\(root)/cgroup.subtree_control"),
                  let group = makeGroup("\(root)/\(name)"),
                  Self.write(needed.map { "+\($0)" }.joined(separator: " "), to: "\(group)/cgroup.subtree_control")
            else {
                return .failure(JobCgroupsUnavailable("cannot create a cgroup v2 group with the \(needed.joined(separator: ", ")) controllers under \(root) (run as root, or delegate a cgroup to the worker)"))
            }
            return .success(JobCgroups(layout: .v2(group), limits: limits))
        }
        // memory and cpuacct bound and measure; pids and cpu only bound.
        let memory = makeGroup("\(root)/memory/\(name)")
        var cpuacct = makeGroup("\(root)/cpuacct/\(name)")
        let pids = limits.pids == nil ? nil : makeGroup("\(root)/pids/\(name)")
        let cpu = limits.cpuCores == nil ? nil : makeGroup("\(root)/cpu/\(name)")
        // systemd's v1 layout mounts cpu and cpuacct as one hierarchy (`cpu,cpuacct`, both names
        // symlinks to it): one group there serves both, else each attempt's second directory
        // already existed and every job failed to start.
        if let cpu, let found = cpuacct, Self.realPath(found) == Self.realPath(cpu) { cpuacct = cpu }
        // The freezer, where there is one, only to stop a group's processes all at once.
        let freezer = files.fileExists(atPath: "\(root)/freezer") ? makeGroup("\(root)/freezer/\(name)") : nil
        var missing: [String] = []
        if memory == nil { missing.append("memory") }
        if limits.pids != nil, pids == nil { missing.append("pids") }
        if limits.cpuCores != nil, cpu == nil { missing.append("cpu") }
        guard missing.isEmpty else {
            let hint = getuid() == 0 ? "read-only, or not delegated to this container" : "run as root"
            return .failure(JobCgroupsUnavailable("cannot create a group in the cgroup v1 \(missing.joined(separator: ", ")) hierarchy under \(root) (\(hint))"))
        }
        return .success(JobCgroups(layout: .v1(memory: memory, pids: pids, cpu: cpu, cpuacct: cpuacct, freezer: freezer), limits: limits))
    }

    /// `path` with every symlink resolved.
    static func realPath(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// The control group version, as the start-up line says it.
    var version: String {
        switch layout {
        case .v1: "cgroup v1"
        case .v2: "cgroup v2"
        }
    }

    /// Which of the limits these groups enforce, for the start-up line.
    var limitsSummary: String {
        var parts: [String] = []
        if let memory = limits.memoryBytes { parts.append("memory \(memory >> 20) MiB") }
        if let cpu = limits.cpuCores { parts.append("CPU \(cpu) cores") }
        if let pids = limits.pids { parts.append("\(pids) processes") }
        return "\(parts.joined(separator: ", ")) per attempt, enforced with \(version)"
    }

    /// Removes the groups of workers no longer running (`mobvibe-worker-<pid>`) and their
    /// attempts' and git's groups, stopping what still runs in them: a worker killed with
    /// SIGKILL left its unsandboxed commands running (nothing else stops them, and their jobs
    /// run again elsewhere), and their groups for good.
    static func removeAbandoned(in hierarchy: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: hierarchy) else { return }
        for name in names where name.hasPrefix("mobvibe-worker-") {
            guard let pid = pid_t(name.dropFirst("mobvibe-worker-".count)), kill(pid, 0) == -1, errno == ESRCH else { continue }
            let group = "\(hierarchy)/\(name)"
            for child in (try? FileManager.default.contentsOfDirectory(atPath: group)) ?? [] where child.hasPrefix("job-") || child.hasPrefix("git-") {
                let directory = "\(group)/\(child)"
                if FileManager.default.fileExists(atPath: "\(directory)/freezer.state") {
                    JobCgroup.freezeAndKill(directory)
                } else {
                    _ = write("1", to: "\(directory)/cgroup.kill")
                }
                JobCgroup.stopProcesses(in: directory, rounds: 50)
                rmdir(directory)
            }
            rmdir(group)
        }
    }

    /// Attempts' group directories this process could not remove yet (processes killed for a
    /// limit or a timeout can take longer to leave than ``JobCgroup/remove()`` waits): tried
    /// again before each new group. Left for the next start's sweep, a running worker gathered
    /// them for good, and a kernel makes at most 65,535 memory groups.
    static let leftovers = Mutex<Set<String>>([])

    /// Removes those of ``leftovers`` that are empty by now.
    static func removeLeftovers() {
        leftovers.withLock { directories in
            for directory in directories where rmdir(directory) == 0 || errno == ENOENT {
                directories.remove(directory)
            }
        }
    }

    /// A new group for one attempt, its limits written.
    func group(named name: String) throws -> JobCgroup {
        Self.removeLeftovers()
        var directories: [String] = []
        func make(_ parent: String?) throws -> String? {
            guard let parent else { return nil }
            let path = "\(parent)/\(name)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            directories.append(path)
            return path
        }
        do {
            switch layout {
            case .v1(let memoryParent, let pidsParent, let cpuParent, let cpuacctParent, let freezerParent):
                let memory = try make(memoryParent), pids = try make(pidsParent), cpu = try make(cpuParent)
                let cpuacct = cpuacctParent != nil && cpuacctParent == cpuParent ? cpu : try make(cpuacctParent)
                let freezer = try make(freezerParent)
                if let memory, let bytes = limits.memoryBytes {
                    try Self.set(String(bytes), "\(memory)/memory.limit_in_bytes")
                    // Without swap accounting this file is absent: the limit above is then the whole bound.
                    _ = Self.write(String(bytes), to: "\(memory)/memory.memsw.limit_in_bytes")
                }
                if let pids, let count = limits.pids { try Self.set(String(count), "\(pids)/pids.max") }
                if let cpu, let cores = limits.cpuCores {
                    try Self.set("100000", "\(cpu)/cpu.cfs_period_us")
                    try Self.set(String(Int(cores * 100_000)), "\(cpu)/cpu.cfs_quota_us")
                }
                return JobCgroup(directories: directories, memory: memory, pids: pids, cpuacct: cpuacct, freezer: freezer, unified: nil)
            case .v2(let parent):
                let group = try make(parent)!
                if let bytes = limits.memoryBytes {
                    try Self.set(String(bytes), "\(group)/memory.max")
                    _ = Self.write("0", to: "\(group)/memory.swap.max")
                }
                if let count = limits.pids { try Self.set(String(count), "\(group)/pids.max") }
                if let cores = limits.cpuCores { try Self.set("\(Int(cores * 100_000)) 100000", "\(group)/cpu.max") }
                return JobCgroup(directories: directories, memory: nil, pids: nil, cpuacct: nil, freezer: nil, unified: group)
            }
        } catch {
            JobCgroup(directories: directories, memory: nil, pids: nil, cpuacct: nil, freezer: nil, unified: nil).remove()
            throw error
        }
    }

    static func set(_ value: String, _ file: String) throws {
        guard write(value, to: file) else { throw JobCgroupsUnavailable("cannot write \(value) to \(file)") }
    }

    @discardableResult
    static func write(_ value: String, to file: String) -> Bool {
        guard let handle = FileHandle(forWritingAtPath: file) else { return false }
        defer { try? handle.close() }
        do {
            try handle.write(contentsOf: Data(value.utf8))
            return true
        } catch {
            return false
        }
    }
}

/// Why the commands' limits cannot be enforced here.
public struct JobCgroupsUnavailable: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
