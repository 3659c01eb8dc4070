import ArgumentParser
import Foundation
import WorkerCore
import WorkerService

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show queue statistics.")

    @Flag(help: "Print one JSON object: the counts by state, per queue, and the sessions' figures (docs/WORKER_SERVICE.md, worker stats).") var json = false
    @Flag(help: "Redraw the figures every few seconds, with throughput and run times, until interrupted.") var watch = false
    @Option(name: .customLong("interval-ms"), help: "Redraw interval with --watch.") var intervalMs: Int = 2000

    func validate() throws {
        if watch && json { throw ValidationError("--watch and --json do not go together") }
        if !(200...600_000).contains(intervalMs) { throw ValidationError("--interval-ms must be from 200 to 600000") }
    }

    func run() async throws {
        let context = try await CommandContext.load()
        if watch {
            let interval = Duration.milliseconds(intervalMs)
            let location = "\(context.configuration.store)"
            try await context.withStore(existingOnly: true) { store in
                while !Task.isCancelled {
                    let stats = try await store.stats(window: interval)
                    // Clear the screen and draw from the top.
                    output("\u{1B}[2J\u{1B}[H" + Self.render(stats) + "\n" + Self.renderWindow(stats)
                        + "\n\n\(location), every \(intervalMs) ms; Ctrl-C to stop")
                    try await Task.sleep(for: interval)
                }
            }
            return
        }
        let stats = try await context.withStore(existingOnly: true) { try await $0.stats() }
        if json {
            output(JobPresentation.json(JobPresentation.jsonObject(stats), pretty: false))
            return
        }
        output(Self.render(stats))
    }

    static func renderWindow(_ stats: QueueStats) -> String {
        func format(_ value: Double?, _ unit: String) -> String { value.map { String(format: "%.3f %@", $0, unit) } ?? "-" }
        return """
            throughput      \(format(stats.completedPerSecond, "jobs/s"))
            mean run time   \(format(stats.meanDurationSeconds, "s"))
            p95 run time    \(format(stats.p95DurationSeconds, "s"))
            """
    }

    static func render(_ stats: QueueStats) -> String {
        let age = stats.oldestPendingAgeSeconds.map { String(format: "%.1f s", $0) } ?? "-"
        let rate = stats.successRate.map { String(format: "%.2f %%", $0) } ?? "-"
        return (
            """
            pending     \(stats.pending)
            processing  \(stats.processing)
            completed   \(stats.completed)
            failed      \(stats.failed)
            cancelled   \(stats.cancelled)
            oldest pending  \(age)
            success rate    \(rate)
            """
        ) + Self.renderSessions(stats.sessions)
    }

    /// The sessions' lines, shown once any session has a turn running, waiting or blocked.
    static func renderSessions(_ sessions: SessionStats) -> String {
        guard sessions != SessionStats() else { return "" }
        let wait = sessions.oldestWaitSeconds.map { String(format: "%.1f s", $0) } ?? "-"
        return """

            sessions running   \(sessions.running)
            sessions waiting   \(sessions.waiting) (\(sessions.waitingTurns) turns)
            sessions blocked   \(sessions.blocked)
            longest turn wait  \(wait)
            """
    }
}
