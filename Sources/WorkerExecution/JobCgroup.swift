import Foundation

/// One attempt's control group (a directory per v1 controller, or one in v2).
struct JobCgroup: Sendable {
    let directories: [String]
    let memory: String?
    let pids: String?
    let cpuacct: String?
    /// The v1 freezer group, to stop every process at once.
    let freezer: String?
    /// The v2 group.
    let unified: String?

    /// The `cgroup.procs` files the command's first process writes its pid into.
    var processFiles: [String] { directories.map { "\($0)/cgroup.procs" } }

    /// The processes in the group now.
    var members: [pid_t] {
        guard let file = processFiles.first, let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { pid_t($0) }
    }

    /// How many times the OOM killer stopped a process of the group.
    var oomKills: Int {
        if let unified { return Self.counter("oom_kill", in: "\(unified)/memory.events") }
        guard let memory else { return 0 }
        return Self.counter("oom_kill", in: "\(memory)/memory.oom_control")
    }

    /// The CPU time the group's processes used (user and system), in seconds.
    var cpuSeconds: Double {
        if let unified { return Double(Self.counter("usage_usec", in: "\(unified)/cpu.stat")) / 1e6 }
        guard let cpuacct, let text = try? String(contentsOfFile: "\(cpuacct)/cpuacct.usage", encoding: .utf8) else { return 0 }
        return Double(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) / 1e9
    }

    /// The most memory the group held at once, in bytes (0 where the kernel does not say).
    var peakMemoryBytes: Int64 {
        let file = unified.map { "\($0)/memory.peak" } ?? memory.map { "\($0)/memory.max_usage_in_bytes" }
        guard let file, let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
        return Int64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// How many times a fork failed at the pids limit.
    var pidsLimitHits: Int {
        if let unified { return Self.counter("max", in: "\(unified)/pids.events") }
        guard let pids else { return 0 }
        return Self.counter("max", in: "\(pids)/pids.events")
    }

    /// Stops whatever is left in the group (a command run without the sandbox may leave
    /// processes) and removes it. Blocks for at most about 10 ms (killed processes take a moment
    /// to leave); a group still busy then is tried again before the next attempt's group is made
    /// (``JobCgroups/leftovers``).
    ///
    /// All at once where the kernel can: `cgroup.kill` (v2), or the freezer (v1) holds every
    /// process while they are killed. Killing by the list alone missed a process that forks
    /// and exits in a loop: its child, born after the list was read, lived on.
    func remove() {
        if let unified {
            _ = JobCgroups.write("1", to: "\(unified)/cgroup.kill")
        } else if let freezer {
            Self.freezeAndKill(freezer)
        }
        for directory in directories.reversed() {
            var removed = false
            for _ in 0..<5 {
                Self.stopProcesses(in: directory, rounds: 1)
                if rmdir(directory) == 0 || errno == ENOENT {
                    removed = true
                    break
                }
                usleep(2_000)
            }
            if !removed { _ = JobCgroups.leftovers.withLock { $0.insert(directory) } }
        }
    }

    /// Freezes the v1 freezer group `directory`, kills every process in it, and thaws it (the
    /// kill takes effect as they thaw).
    static func freezeAndKill(_ directory: String) {
        guard JobCgroups.write("FROZEN", to: "\(directory)/freezer.state") else {
            stopProcesses(in: directory, rounds: 5)
            return
        }
        for _ in 0..<50 {
            let state = (try? String(contentsOfFile: "\(directory)/freezer.state", encoding: .utf8)) ?? ""
            if state.hasPrefix("FROZEN") { break }
            usleep(1_000)
        }
        stopProcesses(in: directory, rounds: 1)
        JobCgroups.write("THAWED", to: "\(directory)/freezer.state")
    }

    /// SIGKILL to every process in the group `directory`, read again up to `rounds` times while
    /// some are left.
    static func stopProcesses(in directory: String, rounds: Int) {
        for round in 0..<rounds {
            let pids = ((try? String(contentsOfFile: "\(directory)/cgroup.procs", encoding: .utf8)) ?? "")
                .split(separator: "\n").compactMap { pid_t($0) }
            if pids.isEmpty { return }
            // 0: a process of another PID namespace, as v2 lists it; kill(0) would be our own group.
            for pid in pids where pid > 0 { kill(pid, SIGKILL) }
            if round + 1 < rounds { usleep(2_000) }
        }
    }

    private static func counter(_ name: String, in file: String) -> Int {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == name { return Int(parts[1]) ?? 0 }
        }
        return 0
    }
}
