import Foundation
import Subprocess
import SystemPackage

extension JobLauncher {
    /// Whether this `worker-launch` starts commands as this worker expects: `nil` when it does,
    /// else what it said. Run once at start-up wherever commands start through it.
    ///
    /// Commands start through `worker-launch --announce`; one from an older release (left first
    /// in PATH, or in an image that copied only the `worker` binary) refuses the option, and
    /// then every command failed to start: each job went back to the queue as this worker's
    /// fault, and the worker paused, again and again, instead of refusing to start. It starts
    /// itself (`--version`), so the check needs nothing else on the machine.
    public func check() async -> String? {
        let line = commandLine(announce: true, argv: [path, "--version"])
        do {
            let result = try await Subprocess.run(
                .path(FilePath(line[0])),
                arguments: Arguments(Array(line.dropFirst())),
                environment: .custom([:]),
                output: .discarded,
                error: .bytes(limit: 1 << 16)
            )
            let marker = String(decoding: Self.startMarker, as: UTF8.self)
            let said = String(decoding: result.standardError, as: UTF8.self)
            if case .exited(0) = result.terminationStatus, said.contains(marker) { return nil }
            let message = said.replacingOccurrences(of: marker, with: "").trimmingCharacters(in: .whitespacesAndNewlines)
            return "\(result.terminationStatus)\(message.isEmpty ? "" : ": \(message)")"
        } catch {
            return "\(error)"
        }
    }
}

/// `worker-launch` failed its start-up check (``JobLauncher/check()``).
public struct JobLauncherError: Error, Sendable, CustomStringConvertible {
    /// The launcher's path.
    public var path: String
    /// What it said.
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String {
        "worker-launch at \(path) does not start commands as this worker expects (\(problem)). It is likely from an older release:"
            + " use the one built with this worker (swift build --product worker-launch), beside the worker binary or first in PATH"
    }
}
