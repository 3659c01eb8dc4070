import Foundation

/// How each attempt's limits are enforced here, decided once at start-up: control groups where
/// the worker may create them (they bound the command's processes together and measure them),
/// else rlimits (per process); the disk limit always with `RLIMIT_FSIZE` and a usage check.
public struct JobLimitEnforcement: Sendable, Hashable {
    public var limits: JobLimits
    /// The control groups that bound memory, CPU and processes and measure each attempt.
    public var cgroups: JobCgroups?
    /// The rlimits set on each command.
    public var rlimits: JobRlimits
    /// Starts commands inside their groups and rlimits (needed when either is set).
    public var launcher: JobLauncher?
    /// One line for the start-up log and `config check`: which limits are enforced, and how.
    public var summary: String

    /// No limits: commands start as they are.
    public static let none = JobLimitEnforcement(limits: JobLimits(), cgroups: nil, rlimits: JobRlimits(), launcher: nil, summary: "none")

    /// How often the disk limit's usage check walks the written directories, at the least; a
    /// walk that takes long (a large workspace) spaces them further (twenty times its duration).
    public static let diskCheckInterval = Duration.milliseconds(250)

    /// Decides how `limits` are enforced here.
    /// - Parameters:
    ///   - name: the worker's control group, `mobvibe-worker-<pid>`.
    ///   - launcher: `worker-launch` (``JobLauncher/locate(path:)``).
    ///   - commandUserID: the user the commands run as (`JOB_USER`'s, else the worker's).
    /// - Throws: ``JobLimitsUnavailable`` naming the variable when a limit asked for cannot be
    ///   enforced here (a limit is never silently dropped).
    public static func prepare(
        limits: JobLimits, name: String, launcher: JobLauncher?, cgroupRoot: String = JobCgroups.mountPoint, commandUserID: uid_t = getuid()
    ) throws(JobLimitsUnavailable) -> JobLimitEnforcement {
        guard !limits.isEmpty else { return .none }
        guard let launcher else {
            throw JobLimitsUnavailable(
                variable: limits.variableNames[0],
                reason: "worker-launch, which starts commands inside their limits, is neither beside the worker binary nor in PATH (it is built with it: swift build --product worker-launch)")
        }
        var cgroups: JobCgroups?
        var rlimits = JobRlimits(fileBytes: limits.diskBytes)
        var parts: [String] = []
        var measured = "each attempt's CPU time and peak memory not measured (no control groups)"
        if limits.needsControlGroups {
            switch JobCgroups.prepare(limits: limits, name: name, root: cgroupRoot) {
            case .success(let prepared):
                cgroups = prepared
                parts.append(prepared.limitsSummary)
                measured = "each attempt's CPU time and peak memory measured with \(prepared.version)"
            case .failure(let reason):
                // rlimits bound a process, not the command's processes together: the fallback
                // says so, and a CPU share has none at all.
                if limits.cpuCores != nil {
                    throw JobLimitsUnavailable(variable: "JOB_CPU_LIMIT", reason: "a CPU limit needs control groups, and \(reason.description)")
                }
                // The kernel does not apply RLIMIT_NPROC to root: the fallback would be a limit
                // on paper only (a root worker in a container with read-only cgroups, commands
                // without JOB_USER, ran 65 processes under JOB_PIDS_LIMIT=20).
                if limits.pids != nil, commandUserID == 0 {
                    throw JobLimitsUnavailable(
                        variable: "JOB_PIDS_LIMIT",
                        reason: "without control groups it falls back to RLIMIT_NPROC, which does not bind root, and the commands run as root (\(reason.description)); set JOB_USER to a user of their own, or give the worker a writable cgroup hierarchy")
                }
                rlimits.dataBytes = limits.memoryBytes
                rlimits.processes = limits.pids
                var fallback: [String] = []
                if let memory = limits.memoryBytes { fallback.append("memory \(memory >> 20) MiB per process with RLIMIT_DATA") }
                if let pids = limits.pids { fallback.append("\(pids) processes of the commands' user with RLIMIT_NPROC") }
                parts.append("\(fallback.joined(separator: ", ")) (no control groups: \(reason.description))")
            }
        }
        if let disk = limits.diskBytes {
            parts.append("disk \(disk >> 20) MiB per attempt (workspace, and /tmp and home in the sandbox) with RLIMIT_FSIZE and a usage check every \(diskCheckInterval.inMilliseconds) ms or more")
        }
        return JobLimitEnforcement(
            limits: limits, cgroups: cgroups, rlimits: rlimits, launcher: launcher,
            summary: "\(parts.joined(separator: "; ")); \(measured)")
    }
}

/// Why a limit asked for cannot be enforced here.
public struct JobLimitsUnavailable: Error, CustomStringConvertible {
    /// The variable that asked for it.
    public let variable: String
    public let reason: String
    public var description: String { "\(variable): \(reason)" }
}

extension JobLimits {
    /// The variables that set these limits, in a fixed order.
    var variableNames: [String] {
        (memoryBytes != nil ? ["JOB_MEMORY_LIMIT_MB"] : []) + (cpuCores != nil ? ["JOB_CPU_LIMIT"] : [])
            + (pids != nil ? ["JOB_PIDS_LIMIT"] : []) + (diskBytes != nil ? ["JOB_DISK_LIMIT_MB"] : [])
    }
}
