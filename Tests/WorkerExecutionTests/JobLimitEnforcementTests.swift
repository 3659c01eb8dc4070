import Foundation
import Subprocess
import Testing
@testable import WorkerExecution

@Suite("JobLimitEnforcement, worker-launch and DiskUsage")
struct JobLimitEnforcementTests {
    /// A folder that is no cgroup file system: no group can be made under it.
    static func withFolder<T>(_ body: (String) async throws -> T) async throws -> T {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        return try await body(folder)
    }

    static let launcher = JobLauncher.locate()

    @Test("worker-launch's start-up check: the one built here passes; one from before --announce is refused, with what it said")
    func launcherCheck() async throws {
        let launcher = try #require(Self.launcher)
        #expect(await launcher.check() == nil)
        let old = JobLauncher(path: CommandHandlerTests.fixture("launcher-old.sh"))
        let problem = try #require(await old.check())
        #expect(problem.contains("unknown option --announce") && problem.contains("125"), "\(problem)")
        let error = "\(JobLauncherError(path: old.path, problem: problem))"
        #expect(error.contains(old.path) && error.contains("older release"), "\(error)")
    }

    @Test("worker-launch is found beside the running executable (where swift build puts both)")
    func launcherIsFound() throws {
        let launcher = try #require(Self.launcher)
        #expect(launcher.path.hasSuffix("/worker-launch") && FileManager.default.isExecutableFile(atPath: launcher.path))
    }

    @Test("without control groups: memory and processes fall back to rlimits, and the start-up line says so and why")
    func rlimitFallback() async throws {
        try await Self.withFolder { folder in
            let limits = JobLimits(memoryBytes: 64 << 20, pids: 50, diskBytes: 8 << 20)
            let enforcement = try JobLimitEnforcement.prepare(
                limits: limits, name: "mobvibe-worker-test", launcher: Self.launcher, cgroupRoot: folder, commandUserID: 1000)
            #expect(enforcement.cgroups == nil)
            #expect(enforcement.rlimits == JobRlimits(fileBytes: 8 << 20, dataBytes: 64 << 20, processes: 50))
            #expect(enforcement.summary.contains("memory 64 MiB per process with RLIMIT_DATA"), "\(enforcement.summary)")
            #expect(enforcement.summary.contains("50 processes of the commands' user with RLIMIT_NPROC"), "\(enforcement.summary)")
            #expect(enforcement.summary.contains("no control groups: cannot create"), "\(enforcement.summary)")
            #expect(enforcement.summary.contains("disk 8 MiB per attempt"), "\(enforcement.summary)")
        }
    }

    @Test("RLIMIT_NPROC does not bind root: without control groups, a process limit for commands that run as root stops start-up, naming JOB_PIDS_LIMIT and JOB_USER")
    func pidsFallbackNotForRoot() async throws {
        try await Self.withFolder { folder in
            // Before: accepted, and reported as enforced, while root's commands forked freely.
            let error = #expect(throws: JobLimitsUnavailable.self) {
                try JobLimitEnforcement.prepare(
                    limits: JobLimits(pids: 20), name: "mobvibe-worker-test", launcher: Self.launcher, cgroupRoot: folder, commandUserID: 0)
            }
            #expect(error?.variable == "JOB_PIDS_LIMIT" && error?.reason.contains("JOB_USER") == true, "\(String(describing: error))")
            // Memory alone still falls back (RLIMIT_DATA binds root too).
            let memory = try JobLimitEnforcement.prepare(
                limits: JobLimits(memoryBytes: 64 << 20), name: "mobvibe-worker-test", launcher: Self.launcher, cgroupRoot: folder, commandUserID: 0)
            #expect(memory.rlimits.dataBytes == 64 << 20)
        }
    }

    @Test("a CPU limit has no rlimit: without control groups it stops start-up, naming JOB_CPU_LIMIT")
    func cpuNeedsCgroups() async throws {
        try await Self.withFolder { folder in
            let error = #expect(throws: JobLimitsUnavailable.self) {
                try JobLimitEnforcement.prepare(limits: JobLimits(cpuCores: 1), name: "mobvibe-worker-test", launcher: Self.launcher, cgroupRoot: folder)
            }
            #expect(error?.variable == "JOB_CPU_LIMIT" && error?.reason.contains("control groups") == true, "\(String(describing: error))")
        }
    }

    @Test("limits without worker-launch stop start-up with where it is looked for; no limits need nothing")
    func launcherRequired() throws {
        #expect(try JobLimitEnforcement.prepare(limits: JobLimits(), name: "x", launcher: nil) == .none)
        do {
            _ = try JobLimitEnforcement.prepare(limits: JobLimits(diskBytes: 1 << 20), name: "x", launcher: nil)
            Issue.record("prepared limits with no launcher")
        } catch {
            #expect(error.variable == "JOB_DISK_LIMIT_MB" && error.reason.contains("worker-launch"), "\(error)")
        }
    }

    @Test("worker-launch sets the rlimits before the command starts: a file stops at RLIMIT_FSIZE with SIGXFSZ")
    func launcherSetsFileSizeLimit() async throws {
        let launcher = try #require(Self.launcher)
        try await Self.withFolder { folder in
            let line = launcher.commandLine(
                join: [], rlimits: JobRlimits(fileBytes: 40_960, dataBytes: 256 << 20), user: nil,
                argv: ["/bin/sh", "-c", "ulimit -d; exec head -c 100000 /dev/zero > \(folder)/big"])
            let result = try await Subprocess.run(.path(.init(line[0])), arguments: Arguments(Array(line.dropFirst())), output: .string(limit: 4096), error: .discarded)
            #expect(result.terminationStatus == .signaled(SIGXFSZ), "\(result.terminationStatus)")
            #expect(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "262144", "RLIMIT_DATA in KiB")
            let size = try FileManager.default.attributesOfItem(atPath: "\(folder)/big")[.size] as? Int
            #expect(size == 40_960)
        }
    }

    @Test("worker-launch refuses to start the command when a step fails: status 125 and the step named")
    func launcherFailsClosed() async throws {
        let launcher = try #require(Self.launcher)
        let line = launcher.commandLine(join: ["/nonexistent/cgroup.procs"], rlimits: JobRlimits(), user: nil, argv: ["/bin/echo", "ran"])
        let result = try await Subprocess.run(
            .path(.init(line[0])), arguments: Arguments(Array(line.dropFirst())), output: .string(limit: 4096), error: .string(limit: 4096))
        #expect(result.terminationStatus == .exited(125))
        #expect(result.standardOutput == "")
        #expect(result.standardError.contains("cannot join the control group /nonexistent/cgroup.procs"), "\(result.standardError)")
    }

    @Test("worker-launch --announce: its start line on standard error just before the command, none when the program cannot be found")
    func launcherAnnounces() async throws {
        let launcher = try #require(Self.launcher)
        let line = launcher.commandLine(join: [], rlimits: JobRlimits(), user: nil, announce: true, argv: ["/bin/sh", "-c", "echo out; echo err >&2"])
        let result = try await Subprocess.run(
            .path(.init(line[0])), arguments: Arguments(Array(line.dropFirst())), output: .string(limit: 4096), error: .bytes(limit: 4096))
        #expect(result.terminationStatus == .exited(0))
        #expect(result.standardOutput == "out\n")
        #expect(result.standardError == JobLauncher.startMarker + Array("\nerr\n".utf8), "\(String(decoding: result.standardError, as: UTF8.self))")

        for program in ["/nonexistent/agent", "no-such-agent-\(UUID().uuidString.prefix(8))", "/etc"] {
            let missing = launcher.commandLine(join: [], rlimits: JobRlimits(), user: nil, announce: true, argv: [program])
            let failed = try await Subprocess.run(
                .path(.init(missing[0])), arguments: Arguments(Array(missing.dropFirst())), output: .discarded, error: .bytes(limit: 4096))
            #expect(failed.terminationStatus == .exited(program == "/etc" ? 126 : 127), "\(program): \(failed.terminationStatus)")
            let text = String(decoding: failed.standardError, as: UTF8.self)
            #expect(text.hasPrefix("worker-launch: cannot start \(program)") && !text.contains("mobvibe-worker-launch"), "\(program): \(text)")
        }
        // A step that fails says so before any start line.
        let failing = launcher.commandLine(join: ["/nonexistent/cgroup.procs"], rlimits: JobRlimits(), user: nil, announce: true, argv: ["/bin/echo", "ran"])
        let refused = try await Subprocess.run(
            .path(.init(failing[0])), arguments: Arguments(Array(failing.dropFirst())), output: .string(limit: 4096), error: .bytes(limit: 4096))
        #expect(refused.terminationStatus == .exited(125) && refused.standardOutput == "")
        #expect(!String(decoding: refused.standardError, as: UTF8.self).contains("mobvibe-worker-launch"))
    }

    @Test("a worker-launch JOB_USER cannot read fails the sandbox's trial; without it inside, the sandbox still starts commands",
          .enabled(if: getuid() == 0, "needs root"))
    func trialWithoutLauncherInside() async throws {
        let launcher = try #require(Self.launcher)
        let bwrap = try #require(JobSandbox.locate(), "bwrap")
        let nobody = try #require(JobUser.resolve("nobody"))
        try await Self.withFolder { folder in
            // Where only root may look (a build under /root, say).
            let hidden = "\(folder)/private"
            try FileManager.default.createDirectory(atPath: hidden, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try FileManager.default.copyItem(atPath: launcher.path, toPath: "\(hidden)/worker-launch")
            let unreadable = JobLauncher(path: "\(hidden)/worker-launch")
            var sandbox = JobSandbox(bwrap: bwrap)
            let failure = await sandbox.trial(launcher: unreadable, user: nobody)
            #expect(failure != nil)
            sandbox.startsThroughLauncher = false
            let without = await sandbox.trial(launcher: unreadable, user: nobody)
            #expect(without == nil, "\(without ?? "")")
        }
    }

    @Test("DiskUsage counts the blocks of every file below, without following symbolic links")
    func diskUsage() async throws {
        try await Self.withFolder { folder in
            let files = FileManager.default
            try files.createDirectory(atPath: "\(folder)/a/b", withIntermediateDirectories: true)
            for path in ["\(folder)/one", "\(folder)/a/two", "\(folder)/a/b/three"] {
                try Data(repeating: 7, count: 1 << 20).write(to: URL(fileURLWithPath: path))
            }
            // A link to something large outside counts as a link, not as its target.
            try files.createSymbolicLink(atPath: "\(folder)/a/usr", withDestinationPath: "/usr")
            let used = DiskUsage.allocatedBytes(under: [folder])
            #expect(used >= 3 << 20 && used < 4 << 20, "\(used)")
            #expect(DiskUsage.allocatedBytes(under: ["\(folder)/a"]) < 3 << 20)
        }
    }

    @Test("TreeRemoval removes folders deeper than its walk goes at once (1,300 levels, a file at the bottom), as rm -rf does")
    func treeRemovalOfDeepFolders() async throws {
        try await Self.withFolder { folder in
            // `mkdir d && cd d`, 1,300 times, by descriptor (the path outgrows PATH_MAX).
            var current = open(folder, O_RDONLY | O_DIRECTORY)
            try #require(current >= 0)
            for _ in 0..<1_300 {
                try #require(mkdirat(current, "d", 0o755) == 0)
                let next = openat(current, "d", O_RDONLY | O_DIRECTORY)
                close(current)
                current = next
                try #require(current >= 0)
            }
            let file = openat(current, "bottom", O_CREAT | O_WRONLY, 0o644)
            #expect(file >= 0)
            close(file)
            close(current)
            // Before: "could not go deeper than 512 folders", and the folder stayed for good.
            let failure = TreeRemoval.remove(folder)
            #expect(failure == nil, "\(String(describing: failure))")
            #expect(!FileManager.default.fileExists(atPath: folder))
        }
    }

    @Test("DiskUsage counts what a folder whose name is not UTF-8 holds; TreeRemoval removes it")
    func diskUsageOfOddNames() async throws {
        try await Self.withFolder { folder in
            // mkdir of bytes the Swift String API cannot name: through the shell.
            let made = try await Subprocess.run(
                .path("/bin/sh"),
                arguments: ["-c", #"d="$1/$(printf 'x\377')" && mkdir -p "$d/y" && head -c 4194304 /dev/zero > "$d/y/f""#, "sh", folder],
                output: .discarded)
            #expect(made.terminationStatus == .exited(0))
            // Before: the name decoded as UTF-8 was another name, and its 4 MiB went uncounted.
            let used = DiskUsage.allocatedBytes(under: [folder])
            #expect(used >= 4 << 20, "\(used)")
            #expect(TreeRemoval.remove(folder) == nil)
            #expect(!FileManager.default.fileExists(atPath: folder))
        }
    }

    @Test("DiskUsage of a workspace the command replaced: by a symlink, or moved away, is over any limit (not the symlink's target, not nothing)")
    func diskUsageOfReplacedWorkspace() async throws {
        try await Self.withFolder { folder in
            let files = FileManager.default
            try files.createDirectory(atPath: "\(folder)/small", withIntermediateDirectories: true)
            try files.createDirectory(atPath: "\(folder)/hidden", withIntermediateDirectories: true)
            try Data(repeating: 7, count: 4 << 20).write(to: URL(fileURLWithPath: "\(folder)/hidden/data"))
            // The workspace moved away (its data now unmeasured) and a symlink to a small folder in its place.
            try files.createSymbolicLink(atPath: "\(folder)/work", withDestinationPath: "\(folder)/small")
            #expect(DiskUsage.allocatedBytes(under: ["\(folder)/work"]) == .max)
            #expect(DiskUsage.allocatedBytes(under: ["\(folder)/gone"]) == .max)
            #expect(DiskUsage.allocatedBytes(under: ["\(folder)/hidden"]) >= 4 << 20)
        }
    }
}
