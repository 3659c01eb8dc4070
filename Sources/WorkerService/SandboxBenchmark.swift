import Foundation
import Subprocess
import SystemPackage
import WorkerExecution

/// `worker bench sandbox`: what the sandbox adds to starting a command. Runs `/bin/true` the way
/// the command handler starts a program (swift-subprocess, a new session), alternately as it is
/// and under bubblewrap with the arguments a job gets (``JobSandbox/arguments(workdir:payloadFile:program:home:scratch:launcher:)``),
/// started inside through `worker-launch --announce` as a job's command is (when it is found),
/// and reports both start-to-exit times.
public struct SandboxBenchmark: Sendable {
    public struct Result: Sendable {
        /// Start-to-exit times in milliseconds, sorted.
        public var unconfined: [Double]
        public var sandboxed: [Double]
        public var description: String

        public static func percentile(_ p: Double, of sorted: [Double]) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return sorted[max(0, min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))]
        }
    }

    let settings: SandboxSettings
    let environment: AppEnvironment

    public init(settings: SandboxSettings, environment: AppEnvironment) {
        self.settings = settings
        self.environment = environment
    }

    public func run(runs: Int) async throws -> Result {
        let decision = try await settings.decide(environment: environment)
        guard let sandbox = decision.sandbox else {
            throw BenchmarkError.sandbox("the sandbox does not work here: \(decision.summary)")
        }
        let program = FileManager.default.isExecutableFile(atPath: "/usr/bin/true") ? "/usr/bin/true" : "/bin/true"
        let workdir = FileManager.default.temporaryDirectory.appendingPathComponent("mobvibe-bench-sandbox-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: workdir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: workdir) }
        let launcher = JobLauncher.locate()
        let arguments = sandbox.arguments(workdir: workdir.path, payloadFile: nil, program: nil, home: "/tmp", launcher: launcher?.path)
        var options = PlatformOptions()
        options.createSession = true
        let clock = ContinuousClock()
        var unconfined: [Double] = [], sandboxed: [Double] = []
        for _ in 0..<runs {
            for confined in [false, true] {
                let start = clock.now
                let result = try await Subprocess.run(
                    .path(FilePath(confined ? sandbox.bwrap : program)),
                    arguments: Arguments(confined ? arguments + (launcher?.commandLine(announce: true, argv: [program]) ?? [program]) : []),
                    environment: .custom(["PATH": "/usr/bin:/bin"]),
                    workingDirectory: FilePath(workdir.path),
                    platformOptions: options,
                    output: .discarded,
                    error: .discarded
                )
                guard case .exited(0) = result.terminationStatus else {
                    throw BenchmarkError.sandbox("\(confined ? "the sandboxed" : "the plain") \(program) ended with \(result.terminationStatus)")
                }
                let elapsed = clock.now - start
                let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                if confined { sandboxed.append(milliseconds) } else { unconfined.append(milliseconds) }
            }
        }
        let how = launcher == nil ? "without worker-launch" : "through worker-launch inside"
        return Result(unconfined: unconfined.sorted(), sandboxed: sandboxed.sorted(), description: "\(decision.summary), \(how)")
    }
}
