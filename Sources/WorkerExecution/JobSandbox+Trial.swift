import Foundation
import Subprocess
import SystemPackage

extension JobSandbox {
    /// Runs `true` once under this sandbox, as a command would run: `nil` when it works, else
    /// what went wrong (bwrap's own message, e.g. that user namespaces are not permitted).
    /// Checked once at start-up: a sandbox that cannot start would fail every job.
    ///
    /// A distroless image has no `true`: there `worker-launch --version` (in `/usr/local/bin`,
    /// inside the system directories every command sees) stands in for it.
    ///
    /// With `user` (`JOB_USER`), as that user through `worker-launch`, as commands start: run as
    /// the worker, a trial passed where the user could not start bwrap at all (no user
    /// namespaces for them, a bwrap only root may run), and then every job failed.
    public func trial(launcher: JobLauncher? = JobLauncher.locate(), user: JobUser? = nil) async -> String? {
        let candidates = [["/usr/bin/true"], ["/bin/true"]] + (launcher.map { [[$0.path, "--version"]] } ?? [])
        guard let program = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0[0]) && Self.isSystemPath($0[0]) }) else {
            return "no `true` program in /usr/bin or /bin (nor worker-launch in /usr) to try the sandbox with"
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mobvibe-sandbox-trial-\(UUID().uuidString.prefix(8))")
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            return "could not create a scratch directory for the trial: \(error)"
        }
        // By descriptor (``TreeRemoval``): run as JOB_USER, the trial's folder is that user's.
        defer { TreeRemoval.remove(scratch.path) }
        // Started inside as commands are, through worker-launch when there is one (it must be
        // able to run in here, as JOB_USER too, or every command would fail to start).
        let insideLauncher = startsThroughLauncher ? launcher : nil
        var commandLine = [bwrap] + arguments(workdir: scratch.path, payloadFile: nil, program: nil, home: nil, launcher: insideLauncher?.path)
            + (insideLauncher?.commandLine(announce: true, argv: program) ?? program)
        if let user {
            guard let launcher else { return "JOB_USER needs worker-launch, which was not found" }
            do {
                try user.own(scratch.path)
            } catch {
                return "could not hand the trial's directory to JOB_USER \(user.name): \(error)"
            }
            commandLine = launcher.commandLine(join: [], rlimits: JobRlimits(), user: user, argv: commandLine)
        }
        do {
            let result = try await Subprocess.run(
                .path(FilePath(commandLine[0])),
                arguments: Arguments(Array(commandLine.dropFirst())),
                environment: .custom([:]),
                output: .discarded,
                error: .string(limit: 1 << 16)
            )
            if case .exited(0) = result.terminationStatus { return nil }
            let message = result.standardError.replacingOccurrences(of: String(decoding: JobLauncher.startMarker, as: UTF8.self), with: "")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let who = user.map { " as JOB_USER \($0.name)" } ?? ""
            return "\(bwrap)\(who) \(result.terminationStatus)\(message.isEmpty ? "" : ": \(message)")"
        } catch {
            return "could not run \(bwrap): \(error)"
        }
    }
}
