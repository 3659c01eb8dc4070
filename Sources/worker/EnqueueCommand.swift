import ArgumentParser
import Foundation
import WorkerCore
import WorkerService

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Add a job (prints its id), or many from a JSON Lines file (prints the count).",
        discussion: """
            Each JSONL line is an object: {"prompt": "...", "queue": "default", "sessionId": "<uuid>", "priority": 0,
            "runAt": "2026-01-31T12:00:00Z", "maxAttempts": 3, "payload": {}, "userId": "<uuid>"}. Only "prompt" is required.
            Lines are inserted in batches, one transaction each; a bad line is reported with its number and
            nothing of its batch is written. When the database refuses a batch, the error names the line to
            go on from; earlier batches stay enqueued.
            """
    )

    @Option(help: "The job's prompt.") var prompt: String?
    @Option(help: "The queue (default: default).") var queue: String?
    @Option(name: .customLong("session-id"), help: "The session's UUID.") var sessionID: String?
    @Option(name: .customLong("user-id"), help: "The UUID of the user the job is for (a Supabase user's id).") var userID: String?
    @Option(help: "Higher runs first (default 0).") var priority: Int?
    @Option(name: .customLong("run-at"), help: "Do not run before this ISO-8601 time.") var runAt: String?
    @Option(name: .customLong("max-attempts"), help: "Attempts before the job fails (default JOB_MAX_ATTEMPTS).") var maxAttempts: Int?
    @Option(help: "A JSON object handed to the handler.") var payload: String?
    @Option(help: "Read jobs from a JSON Lines file, or - for standard input.") var jsonl: String?
    @Option(name: .customLong("batch-size"), help: "Jobs per transaction with --jsonl.") var batchSize: Int = 500

    func validate() throws {
        if (prompt == nil) == (jsonl == nil) {
            throw ValidationError("give either --prompt or --jsonl")
        }
        if jsonl != nil, [queue, sessionID, runAt, payload, userID].contains(where: { $0 != nil }) || priority != nil || maxAttempts != nil {
            throw ValidationError("--jsonl takes the job fields from each line; do not combine it with other job options")
        }
        if !(1...10_000).contains(batchSize) { throw ValidationError("--batch-size must be from 1 to 10000") }
        // The job's fields are checked here, before the configuration and the database are touched,
        // so that an error names the field with `worker enqueue`'s usage (maxAttempts is checked in run).
        if let prompt {
            do {
                _ = try JobInput.job(
                    prompt: prompt, queue: queue, sessionID: sessionID, priority: priority, runAt: runAt,
                    maxAttempts: maxAttempts ?? NewJob.defaultMaxAttempts, payload: payload, userID: userID
                )
            } catch let error as JobInput.Invalid {
                throw ValidationError(error.description)
            }
        }
    }

    func run() async throws {
        let context = try await CommandContext.load()
        if let jsonl {
            try await enqueueLines(from: jsonl, context: context)
            return
        }
        let job: NewJob
        do {
            job = try JobInput.job(
                prompt: prompt ?? "",
                queue: queue,
                sessionID: sessionID,
                priority: priority,
                runAt: runAt,
                maxAttempts: maxAttempts ?? context.configuration.jobMaxAttempts,
                payload: payload,
                userID: userID
            )
        } catch let error as JobInput.Invalid {
            throw ValidationError(error.description)
        }
        let ids = try await context.withStore { try await $0.enqueue([job]) }
        output(ids[0].lowercasedText)
    }

    private func enqueueLines(from source: String, context: CommandContext) async throws {
        let handle: FileHandle
        if source == "-" {
            handle = .standardInput
        } else {
            guard let file = FileHandle(forReadingAtPath: source) else { throw ValidationError("cannot read \(source)") }
            handle = file
        }
        let defaultMaxAttempts = context.configuration.jobMaxAttempts
        let batchSize = self.batchSize
        var reader = LineReader(handle: handle)
        var lineNumber = 0
        /// The line the batch being read starts after (a failed batch is resumed from the next).
        var batchStart = 0
        /// The next batch of valid jobs; empty at the end of the input.
        func nextBatch(written: Int) throws -> [NewJob] {
            var batch: [NewJob] = []
            batchStart = lineNumber
            while batch.count < batchSize, let bytes = try reader.next() {
                lineNumber += 1
                guard let line = String(validating: bytes, as: UTF8.self) else {
                    throw EnqueueError.badLine(number: lineNumber, reason: "not UTF-8 text (JSON must be)", written: written)
                }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                do {
                    batch.append(try JobInput.job(fromJSONLine: Substring(line), defaultMaxAttempts: defaultMaxAttempts))
                } catch let error as JobInput.Invalid {
                    throw EnqueueError.badLine(number: lineNumber, reason: error.description, written: written)
                }
            }
            return batch
        }
        // The first batch is read and checked before the store is opened: a bad line there leaves
        // the database untouched (not even created).
        var batch = try nextBatch(written: 0)
        if batch.isEmpty {
            output("Enqueued 0 jobs")
            return
        }
        let total = try await context.withStore { store -> Int in
            var written = 0
            while !batch.isEmpty {
                do {
                    written += try await store.enqueue(batch).count
                } catch let error as JobStoreError {
                    if case .enqueueOutcomeUnknown = error {
                        throw EnqueueError.batchMaybeWritten(firstLine: batchStart + 1, written: written, reason: "\(error)")
                    }
                    throw EnqueueError.batchNotWritten(firstLine: batchStart + 1, written: written, reason: "\(error)")
                } catch {
                    // Earlier batches are committed: say how far the input got, so that it can be
                    // resumed (`tail -n +LINE`) without enqueuing anything twice.
                    throw EnqueueError.batchNotWritten(firstLine: batchStart + 1, written: written, reason: "\(error)")
                }
                progress("enqueued \(written) jobs")
                batch = try nextBatch(written: written)
            }
            return written
        }
        progress("")
        output("Enqueued \(total) jobs")
    }
}

enum EnqueueError: Error, CustomStringConvertible {
    case badLine(number: Int, reason: String, written: Int)
    case batchNotWritten(firstLine: Int, written: Int, reason: String)
    case batchMaybeWritten(firstLine: Int, written: Int, reason: String)

    var description: String {
        switch self {
        case .badLine(let number, let reason, let written):
            "line \(number): \(reason); nothing of its batch was written (\(written) jobs from earlier batches were enqueued)"
        case .batchNotWritten(let firstLine, let written, let reason):
            "the batch from line \(firstLine) was not written: \(reason). \(written) jobs from earlier lines were enqueued;"
                + " to go on, enqueue the input from line \(firstLine) (tail -n +\(firstLine))"
        case .batchMaybeWritten(let firstLine, let written, let reason):
            "the batch from line \(firstLine) may or may not have been written: \(reason). \(written) jobs from earlier lines were enqueued"
        }
    }
}
