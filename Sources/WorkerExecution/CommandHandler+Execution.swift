import Foundation
import Logging
import Subprocess
import Synchronization
import SystemPackage
import WorkerCore

/// Running one attempt's command: started (in the sandbox, its control group, its rlimits, as
/// `JOB_USER`), fed the prompt, drained line by line into events, raced against its timeout and
/// its limits, and stopped with its whole process group.
extension CommandHandler {
    struct Run {
        var status: TerminationStatus
        var stdout: CappedOutput
        var stderr: CappedOutput
        var timedOut: Bool
        /// The last line of standard output, when it is a JSON object.
        var lastObject: String?
        /// The limit that stopped the command, if one did.
        var limit: JobFailureReason? = nil
    }

    /// Output collected by the drain tasks.
    private final class Collected: Sendable {
        let stdout: Mutex<CappedOutput>
        let stderr: Mutex<CappedOutput>
        let processGroup = Mutex<pid_t?>(nil)
        /// Whether worker-launch said the command itself starts (``CommandStart``).
        let reached = Mutex(false)
        /// The last non-blank line of standard output, when it is a JSON object (`nil` otherwise).
        let lastObject = Mutex<String?>(nil)

        init(limit: Int) {
            stdout = Mutex(CappedOutput(limit: limit))
            stderr = Mutex(CappedOutput(limit: limit))
        }
    }

    private enum RaceResult: Sendable {
        /// The command's run ended (its status is its task's).
        case finished
        case timedOut
        /// The job was cancelled, or stopped at shutdown.
        case cancelled
        /// A limit stopped the command: its reason.
        case limitReached(JobFailureReason)
    }

    func execute(
        prompt: String, workdir: String, payloadFile: String, scratch: (tmp: String, home: String)?, environment: [String: String],
        events: JobEventStream?, logger: Logger, started: @escaping @Sendable (pid_t) -> Void
    ) async throws -> Run {
        let limits = configuration.limits
        var platformOptions = PlatformOptions()
        platformOptions.createSession = true
        platformOptions.teardownSequence = [.send(signal: .terminate, toProcessGroup: true, allowedDurationToNextStep: configuration.killGrace)]
        let collected = Collected(limit: configuration.outputLimitBytes)
        // What starts: the command itself, or bwrap with the command inside.
        var commandLine: [String]
        let launcher = configuration.launcher ?? limits.launcher
        // Whether worker-launch, last before the command, says when the command starts: a run
        // that ends without saying so failed in what starts it (``CommandStart``).
        var announces = false
        if let sandbox = configuration.sandbox {
            // bwrap starts the program inside, where the host's relative paths mean nothing.
            let inside = configuration.argv[0].contains("/") ? (program ?? configuration.argv[0]) : configuration.argv[0]
            var insideLine = [inside] + configuration.argv.dropFirst()
            let insideLauncher = sandbox.startsThroughLauncher ? launcher : nil
            if let insideLauncher {
                // Through worker-launch inside as well (a static program): it announces that the
                // sandbox is up and the program there.
                insideLine = insideLauncher.commandLine(announce: true, argv: insideLine)
                announces = true
            }
            commandLine = [sandbox.bwrap]
                + sandbox.arguments(
                    workdir: workdir, payloadFile: payloadFile, program: program, home: environment["HOME"], scratch: scratch, launcher: insideLauncher?.path)
                + insideLine
        } else {
            commandLine = configuration.argv
            // The command starts in the job's directory: a relative path (`./agent.sh`) is the
            // one checked at start-up, from the worker's own directory.
            if commandLine[0].contains("/"), let program { commandLine[0] = program }
        }
        // With limits, it starts in a control group of its own and with its rlimits, through
        // worker-launch, which joins the group, sets them, drops to JOB_USER and then becomes the
        // command: no process of it ever runs outside.
        let group = try limits.cgroups.map { cgroups in
            do {
                return try cgroups.group(named: "job-\(UUID().uuidString.prefix(12).lowercased())")
            } catch {
                throw CommandFailure.cannotStart(program: configuration.argv[0], reason: "cannot create its control group: \(error)")
            }
        }
        defer { group?.remove() }
        if group != nil || !limits.rlimits.isEmpty || configuration.user != nil {
            // Not swift-subprocess's own user change: it runs in a raw clone of the worker, where
            // glibc's setuid can wait forever on a lock another worker thread held at the clone
            // (a job stuck before its command ever started). worker-launch is a new process.
            guard let launcher else {
                throw CommandFailure.cannotStart(program: configuration.argv[0], reason: "its limits or JOB_USER need worker-launch, which was not found")
            }
            if !commandLine[0].contains("/") { commandLine[0] = program ?? commandLine[0] }
            // In a sandbox, the one inside announces.
            commandLine = launcher.commandLine(
                join: group?.processFiles ?? [], rlimits: limits.rlimits, user: configuration.user, announce: !announces, argv: commandLine)
            announces = true
        }
        let options = platformOptions
        let announced = announces
        // What the disk limit measures: the workspace, and the sandbox's /tmp and home.
        let written = [workdir] + (scratch.map { [$0.tmp, $0.home] } ?? [])
        let executable: Executable = commandLine[0].contains("/") ? .path(FilePath(commandLine[0])) : .name(commandLine[0])
        let arguments = Arguments(Array(commandLine.dropFirst()))
        var variables: [Environment.Key: String] = [:]
        for (name, value) in environment {
            if let key = Environment.Key(rawValue: name) { variables[key] = value }
        }
        let childEnvironment = Environment.custom(variables)
        let input = Array(prompt.utf8)
        let timeout = configuration.timeout
        let outputLimit = configuration.outputLimitBytes

        defer {
            // The leader may be gone while grandchildren that ignored SIGTERM live on: finish the group.
            if let group = collected.processGroup.withLock({ $0 }) { kill(-group, SIGKILL) }
        }
        // The command runs in a task of its own, not a child of this one: a job cancelled (or
        // stopped at shutdown) cancels this task, and had that reached the run, swift-subprocess
        // would have stopped reading its output and killed it at once. Stopping it is
        // `stop(_:_:group:grace:logger:)`'s instead, for a cancel as for a timeout or a limit:
        // SIGTERM to its group, its output still read and recorded, SIGKILL after
        // JOB_KILL_GRACE_MS (at once past the disk limit).
        let completion = CommandCompletion()
        let command = Task {
            defer { completion.end() }
            return try await Subprocess.run(
                executable,
                arguments: arguments,
                environment: childEnvironment,
                workingDirectory: FilePath(workdir),
                platformOptions: options,
                input: .inputWriter,
                output: .sequence,
                error: .sequence
            ) { execution in
                collected.processGroup.withLock { $0 = execution.processIdentifier.value }
                started(execution.processIdentifier.value)
                // Started through worker-launch's announcement, the command has started only once
                // its line comes (the pump says so then); until then it may still be bwrap
                // failing to set the sandbox up.
                if !announced { await events?.status("started", ["pid": String(execution.processIdentifier.value)]) }
                try await Self.pump(
                    execution, input: input, into: collected, announced: announced, events: events, resultLineBytes: outputLimit, logger: logger)
            }.terminationStatus
        }
        let outcome = await withTaskGroup(of: RaceResult.self) { race in
            race.addTask {
                await completion.wait()
                return completion.hasEnded ? .finished : .cancelled
            }
            race.addTask {
                do { try await Task.sleep(for: timeout) } catch { return .cancelled }
                return .timedOut
            }
            if let group {
                // A limit reached ends the attempt at once: a fork bomb held at the pids
                // limit, or a command whose process the OOM killer stopped, would otherwise
                // go on until the timeout.
                race.addTask {
                    while true {
                        do { try await Task.sleep(for: .milliseconds(200)) } catch { return .cancelled }
                        if group.oomKills > 0 { return .limitReached(.outOfMemory) }
                        if group.pidsLimitHits > 0 { return .limitReached(.pidsLimit) }
                    }
                }
            }
            if let disk = limits.limits.diskBytes {
                // RLIMIT_FSIZE stops one file at the limit at once; this stops many files
                // that are each below it, within a check's interval.
                race.addTask {
                    var interval = JobLimitEnforcement.diskCheckInterval
                    while true {
                        do { try await Task.sleep(for: interval) } catch { return .cancelled }
                        let clock = ContinuousClock(), start = clock.now
                        // With the files its processes deleted but keep open (found on the
                        // walk's thread: listing /proc takes a while too).
                        let launched = collected.processGroup.withLock { $0 }
                        let processes: @Sendable () -> [pid_t] = { group?.members ?? launched.map(DiskUsage.commandProcesses) ?? [] }
                        if await Self.diskUsage(written, openBy: processes) > disk { return .limitReached(.diskLimit) }
                        // A slow walk (many files) is made less often: at twenty times its
                        // length, but at least every max(10 s, five walks), so that a million
                        // empty files do not put the next check minutes away, nor walks take
                        // more than a fifth of the time.
                        let walk = clock.now - start
                        interval = min(max(JobLimitEnforcement.diskCheckInterval, walk * 20), max(.seconds(10), walk * 5))
                    }
                }
            }
            let first = await race.next()!
            race.cancelAll()
            return first
        }
        if case .finished = outcome {} else {
            // Past its disk limit, a command gets no grace: what it wrote in the grace period
            // (a command that ignores SIGTERM, for JOB_KILL_GRACE_MS) would pass the limit many
            // times over, where the guide promises no more than what it writes between two checks.
            let grace: Duration = if case .limitReached(.diskLimit) = outcome { .zero } else { configuration.killGrace }
            await stop(command, completion, group: collected.processGroup.withLock { $0 }, grace: grace, logger: logger)
        }
        if case .cancelled = outcome { throw CancellationError() }
        var finishedStatus: TerminationStatus?
        do {
            finishedStatus = try await command.value
        } catch let error as SubprocessError {
            throw CommandFailure.cannotStart(program: configuration.argv[0], reason: "\(error)")
        } catch {
            // A stopped command's run may end with an error of its own (its reading cancelled).
            if case .finished = outcome { throw error }
            finishedStatus = nil
        }
        if let group {
            // What the attempt's processes used, before the group goes.
            events?.addUsage(JobUsage(cpuSeconds: group.cpuSeconds, peakMemoryBytes: group.peakMemoryBytes))
        }
        // The start line never came: the command itself never ran.
        let neverStarted = announced && !collected.reached.withLock { $0 }
        let status: TerminationStatus
        var limit: JobFailureReason?
        switch outcome {
        case .finished:
            guard let finished = finishedStatus else { throw CancellationError() }
            if neverStarted {
                // worker-launch or bwrap failed (its message is the tail).
                let tail = collected.stderr.withLock { $0.tailText }
                throw CommandFailure.cannotStart(
                    program: configuration.argv[0],
                    reason: "\(configuration.sandbox == nil ? "worker-launch" : "the sandbox (bwrap, worker-launch)") failed before the command started ("
                        + { if case .exited(let code) = finished { "status \(code)" } else { "\(finished)" } }() + ")" + (tail.isEmpty ? "" : ": \(tail)"))
            }
            status = finished
            // A limit reached just before the end (the OOM killer stopped the command itself).
            if let group, finished != .exited(0) {
                limit = group.oomKills > 0 ? .outOfMemory : group.pidsLimitHits > 0 ? .pidsLimit : nil
            }
            // A write stopped at RLIMIT_FSIZE: the writer got SIGXFSZ (a shell or bwrap above it
            // exits 128 + that), or it caught the signal and failed on its own; the files say.
            if limit == nil, let disk = limits.limits.diskBytes, finished != .exited(0) {
                let stoppedAtFileSize = finished == .signaled(SIGXFSZ) || finished == .exited(128 + SIGXFSZ)
                if stoppedAtFileSize {
                    limit = .diskLimit
                } else if await Self.diskUsage(written) >= disk {
                    limit = .diskLimit
                }
            }
        case .timedOut:
            if neverStarted {
                // Stuck in what starts it (bwrap, worker-launch).
                throw CommandFailure.cannotStart(
                    program: configuration.argv[0],
                    reason: "what starts it (bwrap, worker-launch) had not started it after JOB_TIMEOUT_MS=\(timeout.inMilliseconds)")
            }
            logger.warning("Command timed out; its process group was stopped", metadata: ["timeoutMs": .stringConvertible(timeout.inMilliseconds)])
            status = .signaled(SIGKILL)
        case .limitReached(let reason):
            logger.warning("Command reached a limit; it was stopped", metadata: ["reason": .string(reason.rawValue)])
            status = .signaled(SIGKILL)
            limit = reason
        case .cancelled:
            throw CancellationError()
        }
        return Run(
            status: status,
            stdout: collected.stdout.withLock { $0 },
            stderr: collected.stderr.withLock { $0 },
            timedOut: { if case .timedOut = outcome { return true } else { return false } }(),
            lastObject: collected.lastObject.withLock { $0 },
            limit: limit
        )
    }

    /// Stops a command that is still running: SIGTERM to its process group (in the sandbox, to
    /// the processes inside it), then up to `grace` (JOB_KILL_GRACE_MS, or none) for it to end
    /// (its output still read and recorded: an agent that saves its work and says so on SIGTERM
    /// gets both in), then SIGKILL to the group. Should its run
    /// still not end (a process that left the group holds its output open), the run's reading is
    /// cancelled after a few more seconds.
    private func stop(_ command: Task<TerminationStatus, any Error>, _ completion: CommandCompletion, group: pid_t?, grace: Duration, logger: Logger) async {
        guard let group else {
            // Not started yet: nothing to signal.
            command.cancel()
            _ = await command.result
            return
        }
        if grace > .zero {
            if configuration.sandbox != nil {
                // Not bwrap's group: bwrap dies of SIGTERM, and with it (--die-with-parent) the
                // namespace and every process in it at once. The command's own processes get it
                // (the sandbox's descendants but bwrap itself, which exits when the command does).
                for process in DiskUsage.commandProcesses(group) where ProcessStat(pid: process)?.name != "bwrap" {
                    kill(process, SIGTERM)
                }
            } else {
                kill(-group, SIGTERM)
            }
            if await completion.wait(atMost: grace) { return }
            logger.debug("Command still running after its grace period; killing its process group", metadata: [
                "killGraceMs": .stringConvertible(grace.inMilliseconds),
            ])
        }
        kill(-group, SIGKILL)
        if await completion.wait(atMost: .seconds(5)) { return }
        command.cancel()
        _ = await command.result
    }

    /// ``DiskUsage`` of `paths`, walked on a Dispatch thread: a large workspace takes a while,
    /// which must not hold one of the few cooperative threads every job shares.
    private static func diskUsage(_ paths: [String], openBy processes: @escaping @Sendable () -> [pid_t] = { [] }) async -> Int64 {
        await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .utility).async {
                let walked = DiskUsage.allocatedBytes(under: paths)
                let pids = walked == .max ? [] : processes()
                let held = pids.isEmpty ? 0 : DiskUsage.deletedOpenBytes(of: pids, onFileSystemsOf: paths)
                continuation.resume(returning: walked.addingReportingOverflow(held).overflow ? .max : walked + held)
            }
        }
    }

    /// Feeds the prompt and drains both output streams concurrently (an unread pipe would block
    /// the child). Each line becomes an event; while the worker's event buffer is full the
    /// reading waits, and so, once the pipe is full, does the child (backpressure).
    private static func pump(
        _ execution: Execution<CustomWriteInput, SequenceOutput, SequenceOutput>,
        input: [UInt8],
        into collected: Collected,
        announced: Bool,
        events: JobEventStream?,
        resultLineBytes: Int,
        logger: Logger
    ) async throws {
        let lineBytes = events?.limits.maximumEventBytes ?? 4096
        // A line of standard output is kept whole up to the output limit (JOB_OUTPUT_LIMIT_BYTES),
        // not the event's bound: its event is cut all the same, but the last line is the result
        // and may report usage, and Claude Code's final `result` message holds the agent's whole
        // answer. Cut at 64 KiB, a long answer was no JSON: the result fell back to the raw
        // output, and the tokens and cost it reported were lost.
        let stdoutLineBytes = max(lineBytes, resultLineBytes)
        let pid = String(execution.processIdentifier.value)
        // Announced, the `started` event comes with worker-launch's line on standard error, and
        // the command's standard output waits for it, so that its lines follow `started` as
        // they followed the start; a run that ends without the line opens the way at its end.
        // (A one-shot signal: ``CommandCompletion``'s end here is the start's.)
        let startSeen = CommandCompletion()
        if !announced { startSeen.end() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // A child that does not read its input (or closes it early) is fine: SIGPIPE is ignored.
                _ = try? await execution.standardInputWriter.write(input)
                try? await execution.standardInputWriter.finish()
            }
            group.addTask {
                var lines = OutputLines(maximumBytes: stdoutLineBytes)
                var lastObject: String?
                func emit(_ line: OutputLines.Line) async {
                    // The last line that says anything decides the result.
                    guard !CommandOutputLine.isBlank(line.bytes) else { return }
                    if let events {
                        lastObject = await CommandOutputLine.emitStandardOutput(line, to: events)
                    } else {
                        lastObject = CommandOutputLine.jsonObject(line)
                    }
                }
                for try await chunk in execution.standardOutput {
                    await startSeen.wait()
                    let complete = chunk.withUnsafeBytes { bytes in
                        collected.stdout.withLock { $0.append(bytes) }
                        return lines.append(bytes)
                    }
                    for line in complete { await emit(line) }
                }
                if let line = lines.finish() { await emit(line) }
                collected.lastObject.withLock { $0 = lastObject }
            }
            group.addTask {
                var lines = OutputLines(maximumBytes: lineBytes)
                let debug = logger.logLevel <= .debug
                // Until worker-launch's line comes: it is taken out of what is kept.
                var start = announced ? CommandStart() : nil
                func emit(_ line: OutputLines.Line) async {
                    if debug { logger.debug("Command stderr", metadata: ["line": .string(String(decoding: line.bytes, as: UTF8.self))]) }
                    if let events { await CommandOutputLine.emitStandardError(line, to: events) }
                }
                func keep(_ bytes: UnsafeRawBufferPointer) -> [OutputLines.Line] {
                    collected.stderr.withLock { $0.append(bytes) }
                    return events == nil && !debug ? [] : lines.append(bytes)
                }
                for try await chunk in execution.standardError {
                    guard var seen = start, !seen.reached else {
                        for line in chunk.withUnsafeBytes(keep) { await emit(line) }
                        continue
                    }
                    let filtered = chunk.withUnsafeBytes { seen.filter($0) } ?? []
                    start = seen
                    guard seen.reached else {
                        for line in filtered.withUnsafeBytes(keep) { await emit(line) }
                        continue
                    }
                    // What starts the command said before its line (whole lines), `started`,
                    // then what the command said.
                    let before = filtered.prefix(seen.keptBeforeMarker), after = filtered.dropFirst(seen.keptBeforeMarker)
                    for line in before.withUnsafeBytes(keep) { await emit(line) }
                    collected.reached.withLock { $0 = true }
                    await events?.status("started", ["pid": pid])
                    startSeen.end()
                    for line in after.withUnsafeBytes(keep) { await emit(line) }
                }
                if let rest = start?.finish(), !rest.isEmpty {
                    for line in rest.withUnsafeBytes(keep) { await emit(line) }
                }
                if let line = lines.finish() { await emit(line) }
                startSeen.end()
            }
            try await group.waitForAll()
        }
    }
}
