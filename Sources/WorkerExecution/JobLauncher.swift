import Foundation

/// `worker-launch`, the small C program (Sources/worker-launch) that starts an attempt's command
/// inside its limits: it joins the attempt's control groups, sets its rlimits, drops to
/// `JOB_USER`, and then execs the command (or bwrap), so the command is born inside all of it.
///
/// A shell could do the first two, but a distroless image has none, `ulimit`'s units differ
/// between shells, and a shell cannot change users; Swift cannot run code in the child between
/// fork and exec (swift-subprocess offers no hook for it).
public struct JobLauncher: Sendable, Hashable {
    /// The program's path.
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// `worker-launch` beside the running executable (where `swift build` and the image put it),
    /// else in `path`.
    public static func locate(path: String? = ProcessInfo.processInfo.environment["PATH"]) -> JobLauncher? {
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let beside = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("worker-launch").path
            if FileManager.default.isExecutableFile(atPath: beside) { return JobLauncher(path: beside) }
        }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/worker-launch"
            if FileManager.default.isExecutableFile(atPath: candidate) { return JobLauncher(path: candidate) }
        }
        return nil
    }

    /// The line `--announce` writes on standard error just before the command starts (the C
    /// program's `START_MARKER`): what the worker reads as "the command was reached"
    /// (``CommandStart``).
    static let startMarker = Array("\u{1}mobvibe-worker-launch: the command starts".utf8)

    /// The command line that starts `argv` (its first element a path) after joining the
    /// `cgroup.procs` files in `join`, setting `rlimits`, and becoming `user`; with `announce`,
    /// ``startMarker`` on standard error once all that has passed and the program is found.
    public func commandLine(join: [String] = [], rlimits: JobRlimits = JobRlimits(), user: JobUser? = nil, announce: Bool = false, argv: [String]) -> [String] {
        var line = [path]
        for file in join { line += ["--join", file] }
        line += rlimits.launcherArguments
        if let user { line += ["--user", user.launcherArgument] }
        if announce { line.append("--announce") }
        return line + ["--"] + argv
    }
}
