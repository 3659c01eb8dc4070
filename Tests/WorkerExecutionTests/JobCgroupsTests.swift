import Foundation
import Testing
@testable import WorkerExecution

/// The attempts' control groups on this machine's real hierarchy (root: cgroup v1 or v2
/// mounted writable, as on this project's CI machine).
@Suite("Control groups", .enabled(if: getuid() == 0 && FileManager.default.isWritableFile(atPath: JobCgroups.mountPoint + "/memory")
    || getuid() == 0 && FileManager.default.fileExists(atPath: JobCgroups.mountPoint + "/cgroup.controllers"), "needs root and writable control groups"))
struct JobCgroupsTests {
    @Test("a group still busy when its attempt ends is removed before the next attempt's group is made, not left until the worker restarts")
    func busyGroupRemovedLater() throws {
        let name = "mobvibe-worker-test-\(UUID().uuidString.prefix(8).lowercased())"
        let cgroups = try JobCgroups.prepare(limits: JobLimits(memoryBytes: 64 << 20), name: name).get()
        defer {
            // The worker's own group, in each hierarchy it was made in.
            for parent in ["", "/memory", "/cpuacct", "/pids", "/cpu", "/freezer"] { rmdir("\(JobCgroups.mountPoint)\(parent)/\(name)") }
        }
        let first = try cgroups.group(named: "job-first")
        let busy = try #require(first.directories.first)
        // A child group keeps it from being removed, as processes still leaving after SIGKILL do.
        #expect(mkdir("\(busy)/still-leaving", 0o755) == 0)
        first.remove()
        #expect(FileManager.default.fileExists(atPath: busy), "busy: not removed yet")
        #expect(JobCgroups.leftovers.withLock { $0.contains(busy) })
        rmdir("\(busy)/still-leaving")
        // The next attempt's group: before it, the left-over one goes.
        let second = try cgroups.group(named: "job-second")
        #expect(!FileManager.default.fileExists(atPath: busy), "removed before the next attempt's group")
        #expect(!JobCgroups.leftovers.withLock { $0.contains(busy) })
        second.remove()
        for directory in second.directories { #expect(!FileManager.default.fileExists(atPath: directory)) }
    }

    @Test("systemd's v1 layout, cpu and cpuacct one hierarchy (both names symlinks to it): an attempt's group with a CPU limit is made once there, and removed",
          .enabled(if: FileManager.default.fileExists(atPath: JobCgroups.mountPoint + "/memory"), "cgroup v1 only"))
    func cpuAndCpuacctMountedTogether() throws {
        // A root of symlinks: cpu and cpuacct name the same hierarchy, as `cpu,cpuacct` does.
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-root-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: root) }
        for (link, target) in [("memory", "memory"), ("cpu", "cpu"), ("cpuacct", "cpu")] {
            try FileManager.default.createSymbolicLink(atPath: "\(root)/\(link)", withDestinationPath: "\(JobCgroups.mountPoint)/\(target)")
        }
        let name = "mobvibe-worker-test-\(UUID().uuidString.prefix(8).lowercased())"
        let cgroups = try JobCgroups.prepare(limits: JobLimits(memoryBytes: 64 << 20, cpuCores: 1), name: name, root: root).get()
        defer { for parent in ["/memory", "/cpu", "/freezer"] { rmdir("\(JobCgroups.mountPoint)\(parent)/\(name)") } }
        let group = try cgroups.group(named: "job-together")
        #expect(group.directories.count == 2, "\(group.directories)")
        #expect(group.cpuacct != nil)
        group.remove()
        for directory in group.directories { #expect(!FileManager.default.fileExists(atPath: directory)) }
    }

    @Test("a dead worker's group left with a frozen process (SIGKILLed between freezing and thawing it) is stopped and removed at the next start",
          .enabled(if: FileManager.default.fileExists(atPath: JobCgroups.mountPoint + "/freezer"), "cgroup v1 only"))
    func frozenLeftoverRemoved() async throws {
        let freezerRoot = JobCgroups.mountPoint + "/freezer"
        // A pid no process can have (above pid_max): a dead worker's. (Not a child that has
        // exited: Process.waitUntilExit can hold a thread of the cooperative pool for long in a
        // process that also starts children with swift-subprocess.)
        let maximum = Int((try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 4_194_304
        let worker = "\(freezerRoot)/mobvibe-worker-\(maximum + Int.random(in: 1...100_000))"
        let group = "\(worker)/job-left"
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["300"]
        try sleeper.run()
        let pid = sleeper.processIdentifier
        defer {
            kill(pid, SIGKILL)
            JobCgroups.write("THAWED", to: "\(group)/freezer.state")
            rmdir(group)
            rmdir(worker)
        }
        // Another worker starting meanwhile (this suite runs beside others) removes a dead
        // worker's group as this test's start does: made again until it holds the frozen process.
        var frozen = false
        for _ in 0..<5 where !frozen {
            try? FileManager.default.createDirectory(atPath: group, withIntermediateDirectories: true)
            frozen = JobCgroups.write(String(pid), to: "\(group)/cgroup.procs") && JobCgroups.write("FROZEN", to: "\(group)/freezer.state")
        }
        #expect(frozen)
        let name = "mobvibe-worker-test-\(UUID().uuidString.prefix(8).lowercased())"
        _ = try JobCgroups.prepare(limits: JobLimits(memoryBytes: 64 << 20), name: name).get()
        defer { for parent in ["", "/memory", "/cpuacct", "/pids", "/cpu", "/freezer"] { rmdir("\(JobCgroups.mountPoint)\(parent)/\(name)") } }
        // Dead: gone, or a zombie (the kill done, not yet reaped).
        func alive() -> Bool {
            guard kill(pid, 0) == 0 else { return false }
            return !((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "").contains(") Z ")
        }
        var stopped = false
        for _ in 0..<100 where !stopped {
            stopped = !alive()
            if !stopped { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(stopped, "the frozen process still runs")
        #expect(!FileManager.default.fileExists(atPath: worker), "the dead worker's group is gone")
    }
}
