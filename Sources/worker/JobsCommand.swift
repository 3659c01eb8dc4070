import ArgumentParser
import Foundation
import WorkerCore
import WorkerService

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List, show, follow, retry and cancel jobs.",
        subcommands: [List.self, Show.self, Logs.self, Retry.self, Cancel.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs, newest first (a session's turns oldest first).")

        @Option(help: "Only jobs in this state: \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")).") var status: JobStatus?
        @Option(help: "Only jobs in this queue.") var queue: String?
        @Option(help: "Only this session's turns, in the order they run, with why each pending one waits.") var session: String?
        @Option(help: "Only this user's jobs (their UUID).") var user: String?
        @Option(help: "At most this many jobs.") var limit: Int = 50
        @Flag(help: "Print a JSON array.") var json = false

        func validate() throws {
            if !(1...100_000).contains(limit) { throw ValidationError("--limit must be from 1 to 100000") }
            if let session { _ = try JobID.parse(session, option: "--session") }
            if let user { _ = try JobID.parse(user, option: "--user", kind: "user id") }
        }

        func run() async throws {
            let context = try await CommandContext.load()
            let sessionID = try session.map { try JobID.parse($0, option: "--session") }
            let userID = try user.map { try JobID.parse($0, option: "--user", kind: "user id") }
            let jobs = try await context.withStore(existingOnly: true) {
                try await $0.jobs(matching: JobFilter(status: status, queue: queue, session: sessionID, user: userID, limit: limit, summary: !json))
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

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a job's events: the lines its command printed and its changes of state.",
            discussion: """
                Events are numbered per job (SEQ, the first column); --after SEQ prints only later ones, so a reader
                that saw up to SEQ goes on with no gap and no duplicate. With --follow the command keeps printing
                until the job is completed, failed or cancelled, then exits 0 (1 if it failed or was cancelled;
                2 if it could not follow it: no such job, the database unreachable).
                """
        )

        @Argument(help: "The job's id (a UUID).") var id: String
        @Flag(help: "Keep printing new events until the job has finished.") var follow = false
        @Option(help: "Only events after this sequence number.") var after: Int64 = 0
        @Flag(help: "Print one JSON object a line.") var json = false
        @Option(help: "Print at most this many events (not with --follow).") var limit: Int?

        func validate() throws {
            _ = try JobID.parse(id)
            if after < 0 { throw ValidationError("--after must be 0 or more") }
            if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more") }
            if limit != nil, follow { throw ValidationError("--limit and --follow do not go together") }
        }

        func run() async throws {
            let failed: Bool
            do {
                failed = try await print()
            } catch {
                // Not 1, which --follow keeps for a job that failed: a script waiting on a job
                // must tell that from a job it could not follow.
                guard follow else { throw error }
                FileHandle.standardError.write(Data("Error: \(WorkerCommand.message(for: error))\n".utf8))
                throw ExitCode(2)
            }
            if failed { throw ExitCode(1) }
        }

        /// Prints the events (following them with `--follow`); returns whether the job ended
        /// other than completed.
        private func print() async throws -> Bool {
            let id = try JobID.parse(self.id)
            let context = try await CommandContext.load()
            let json = self.json
            let follow = self.follow
            let limit = self.limit
            return try await context.withStore(existingOnly: true) { store -> Bool in
                guard let first = try await store.job(id: id) else { throw JobStoreError.jobNotFound(id) }
                var job = first
                var last = after
                var ended = false
                var left = limit ?? Int.max
                /// Prints every event after `last` (up to `left`).
                func drain() async throws {
                    while left > 0 {
                        // Pages bounded in bytes as well (an event may be a MiB).
                        let pageLimit = min(JobEventPaging.maximumPageSize, left)
                        let events = try await store.events(jobID: id, after: last, limit: pageLimit, maxBytes: JobEventPaging.pageBytes)
                        left -= events.count
                        for event in events {
                            output(json ? JobEventPresentation.jsonLine(event) : JobEventPresentation.textLine(event))
                            ended = JobEventPresentation.endsJob(event)
                        }
                        guard let end = events.last else { return }
                        last = end.sequence
                        if !JobEventPaging.mayHaveMore(events, limit: pageLimit) { return }
                    }
                }
                try await drain()
                guard follow else { return false }
                // A job's events are all stored before its outcome: once it is seen finished, one
                // more read has them all. A running job that was cancelled is the exception: it
                // keeps its lease until its worker has stopped the command and reported it (or,
                // that worker dead, until the rescue clears it).
                while !(job.status.isFinal && (ended || !job.isBeingStopped)) {
                    try await Task.sleep(for: .milliseconds(200))
                    guard let current = try await store.job(id: id) else { throw JobStoreError.jobNotFound(id) }
                    job = current
                    try await drain()
                }
                return job.status != .completed
            }
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
            abstract: "Cancel a pending or running job (or a failed turn that holds its session).",
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
