import ArgumentParser
import Foundation
import WorkerCore
import WorkerService

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show queue statistics.")

    @Flag(help: "Print one JSON object with the monitor's keys.") var json = false

    func run() async throws {
        let context = try await CommandContext.load()
        let stats = try await context.withStore { try await $0.stats() }
        if json {
            output(JobPresentation.json(JobPresentation.jsonObject(stats), pretty: false))
            return
        }
        let age = stats.oldestPendingAgeSeconds.map { String(format: "%.1f s", $0) } ?? "-"
        let rate = stats.successRate.map { String(format: "%.2f %%", $0) } ?? "-"
        output(
            """
            pending     \(stats.pending)
            processing  \(stats.processing)
            completed   \(stats.completed)
            failed      \(stats.failed)
            cancelled   \(stats.cancelled)
            oldest pending  \(age)
            success rate    \(rate)
            """
        )
    }
}
