import Foundation

/// The resources one attempt's command may use (`JOB_MEMORY_LIMIT_MB`, `JOB_CPU_LIMIT`,
/// `JOB_PIDS_LIMIT`, `JOB_DISK_LIMIT_MB`), enforced as ``JobLimitEnforcement`` decides.
public struct JobLimits: Sendable, Hashable {
    /// The most memory the command's processes may hold together; past it the kernel's OOM
    /// killer stops one of them and the attempt fails with `out_of_memory`.
    public var memoryBytes: Int?
    /// The CPU time the command may use per wall-clock second, in cores (1.5: one and a half).
    public var cpuCores: Double?
    /// The most processes and threads the command may have at once; reaching it fails the
    /// attempt with `pids_limit` (a fork bomb ends within a second).
    public var pids: Int?
    /// The most the command may write to disk: its workspace, and in the sandbox its `/tmp` and
    /// home; past it the attempt fails with `disk_limit`.
    public var diskBytes: Int?

    public init(memoryBytes: Int? = nil, cpuCores: Double? = nil, pids: Int? = nil, diskBytes: Int? = nil) {
        self.memoryBytes = memoryBytes
        self.cpuCores = cpuCores
        self.pids = pids
        self.diskBytes = diskBytes
    }

    public var isEmpty: Bool { !needsControlGroups && diskBytes == nil }

    /// Whether a limit is set that control groups enforce (memory, CPU, processes).
    public var needsControlGroups: Bool { memoryBytes != nil || cpuCores != nil || pids != nil }
}
