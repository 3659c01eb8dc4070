import ArgumentParser
import Foundation
import WorkerCore
import WorkerService

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List, show, retry and cancel jobs.",
        subcommands: [List.self, Show.self, Retry.self, Cancel.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs, newest first (a session's turns oldest first).")

        @Option(help: "Only jobs in this state: \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")).") var status: JobStatus?
        @Option(help: "Only jobs in this queue.") var queue: String?
        @Option(help: "Only this session's turns, in the order they run, with why each pending one waits.") var session: String?
        @Option(help: "At most this many jobs.") var limit: Int = 50
        @Flag(help: "Print a JSON array.") var json = false

        func validate() throws {
            if !(1...100_000).contains(limit) { throw ValidationError("--limit must be from 1 to 100000") }
            if let session { _ = try JobID.parse(session, option: "--session") }
        }

        func run() async throws {
            let context = try await CommandContext.load()
            let sessionID = try session.map { try JobID.parse($0, option: "--session") }
            let jobs = try await context.withStore(existingOnly: true) {
                try await $0.jobs(matching: JobFilter(status: status, queue: queue, session: sessionID, limit: limit, summary: !json))
            }
            if json {
                output(JobPresentation.json(jobs.map(JobPresentation.jsonObject)))
            } else {
                output(sessionID == nil ? JobPresentation.table(jobs) : JobPresentation.sessionTable(jobs))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one job.")

        @Argument(help: "The job's id (a UUID).") var id: String
        @Flag(help: "Print a JSON object.") var json = false

        func validate() throws { _ = try JobID.parse(id) }

        func run() async throws {
            let id = try JobID.parse(self.id)
            let context = try await CommandContext.load()
            guard let job = try await context.withStore(existingOnly: true, { try await $0.job(id: id) }) else {
                throw JobStoreError.jobNotFound(id)
            }
            output(json ? JobPresentation.json(JobPresentation.jsonObject(job)) : JobPresentation.details(job))
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a failed, cancelled or completed job again.")

        @Argument(help: "The job's id (a UUID).") var id: String

        func validate() throws { _ = try JobID.parse(id) }

        func run() async throws {
            let id = try JobID.parse(self.id)
            let context = try await CommandContext.load()
            let job = try await context.withStore(existingOnly: true) { try await $0.retry(id: id) }
            output("Job \(job.id.lowercasedText) is pending again (attempts \(job.attempts) of \(job.maxAttempts))")
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a pending or running job.",
            discussion: "A running job is stopped by its worker at once (notification), at the latest at its next lease renewal."
        )

        @Argument(help: "The job's id (a UUID).") var id: String

        func validate() throws { _ = try JobID.parse(id) }

        func run() async throws {
            let id = try JobID.parse(self.id)
            let context = try await CommandContext.load()
            let job = try await context.withStore(existingOnly: true) { try await $0.cancel(id: id) }
            output("Job \(job.id.lowercasedText) is cancelled")
        }
    }
}

extension JobStatus: ExpressibleByArgument {}
