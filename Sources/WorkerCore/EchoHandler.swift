import Foundation

/// A built-in handler that completes each job with `{"echo": <prompt>}`.
///
/// For demos, benchmarks and tests it honours two payload keys:
/// - `sleepMs`: wait that many milliseconds first (cancellably), to simulate work, in steps of
///   about half a second (at most 20), each step an `output` event on the job's live stream;
/// - `failTimes`: fail the first N attempts, to exercise retries.
public struct EchoHandler: JobHandler {
    public init() {}

    public func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
        let options = try Options(payload: job.job.payload)
        if options.sleepMs > 0 {
            let steps = max(1, min(20, options.sleepMs / 500))
            for step in 1...steps {
                await context.emit(.output, text: "working on it (step \(step) of \(steps))")
                try await Task.sleep(for: .milliseconds(options.sleepMs / steps + (step == steps ? options.sleepMs % steps : 0)))
            }
        }
        if job.lease.attempt <= options.failTimes {
            throw EchoHandlerError.simulatedFailure(attempt: job.lease.attempt, failTimes: options.failTimes)
        }
        return try Self.encode(echo: job.job.prompt)
    }

    /// `{"echo": text}` as JSON text (by hand: see ``JSONText``).
    static func encode(echo text: String) throws -> String {
        "{\"echo\":" + JSONText.quoted(text) + "}"
    }

    struct Options {
        var sleepMs = 0
        var failTimes = 0

        private struct Keys: Decodable {
            var sleepMs: Int?
            var failTimes: Int?
        }

        init(payload: String) throws {
            // The common case, a payload without these keys, needs no parsing (nor Foundation's
            // string search, which cost more than the rest of the handler).
            guard Self.mentions("sleepMs", in: payload) || Self.mentions("failTimes", in: payload) else { return }
            let keys: Keys
            do {
                keys = try JSONDecoder().decode(Keys.self, from: Data(payload.utf8))
            } catch {
                throw EchoHandlerError.invalidOptions(payload: String(payload.prefix(200)))
            }
            sleepMs = keys.sleepMs ?? 0
            failTimes = keys.failTimes ?? 0
            if sleepMs < 0 || failTimes < 0 { throw EchoHandlerError.invalidOptions(payload: String(payload.prefix(200))) }
        }

        /// Whether `key` occurs in `payload`, compared byte by byte (the generic collection
        /// search, and Foundation's before it, cost a busy worker a sixth of its CPU time).
        static func mentions(_ key: StaticString, in payload: String) -> Bool {
            var payload = payload
            let needle = UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
            return payload.withUTF8 { bytes in
                guard bytes.count >= needle.count, let first = needle.first else { return false }
                var index = 0
                while index <= bytes.count - needle.count {
                    if bytes[index] == first, UnsafeBufferPointer(rebasing: bytes[index..<(index + needle.count)]).elementsEqual(needle) {
                        return true
                    }
                    index += 1
                }
                return false
            }
        }
    }
}

/// Failures of the ``EchoHandler``.
public enum EchoHandlerError: Error, Sendable, CustomStringConvertible {
    case simulatedFailure(attempt: Int, failTimes: Int)
    case invalidOptions(payload: String)

    public var description: String {
        switch self {
        case .simulatedFailure(let attempt, let failTimes):
            "simulated failure on attempt \(attempt) (payload failTimes=\(failTimes))"
        case .invalidOptions(let payload):
            "payload keys sleepMs and failTimes must be non-negative whole numbers, got \(payload)"
        }
    }
}
