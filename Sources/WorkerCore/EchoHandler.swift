import Foundation

/// A built-in handler that completes each job with `{"echo": <prompt>}`.
///
/// For demos, benchmarks and tests it honours two payload keys:
/// - `sleepMs`: wait that many milliseconds first (cancellably), to simulate work;
/// - `failTimes`: fail the first N attempts, to exercise retries.
public struct EchoHandler: JobHandler {
    public init() {}

    public func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
        let options = try Options(payload: job.job.payload)
        if options.sleepMs > 0 {
            try await Task.sleep(for: .milliseconds(options.sleepMs))
        }
        if job.lease.attempt <= options.failTimes {
            throw EchoHandlerError.simulatedFailure(attempt: job.lease.attempt, failTimes: options.failTimes)
        }
        return try Self.encode(echo: job.job.prompt)
    }

    /// `{"echo": text}` as JSON text.
    static func encode(echo text: String) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: ["echo": text], options: [.withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    struct Options {
        var sleepMs = 0
        var failTimes = 0

        init(payload: String) throws {
            // The common case, an empty payload, needs no parsing.
            guard payload.count > 2, payload.contains("sleepMs") || payload.contains("failTimes") else { return }
            let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any]
            sleepMs = try Self.integer(object?["sleepMs"], key: "sleepMs")
            failTimes = try Self.integer(object?["failTimes"], key: "failTimes")
        }

        static func integer(_ value: Any?, key: String) throws -> Int {
            guard let value else { return 0 }
            guard let number = value as? NSNumber, !(value is Bool), number.doubleValue >= 0,
                  number.doubleValue < Double(Int32.max)
            else { throw EchoHandlerError.invalidOption(key: key, value: "\(value)") }
            return number.intValue
        }
    }
}

/// Failures of the ``EchoHandler``.
public enum EchoHandlerError: Error, Sendable, CustomStringConvertible {
    case simulatedFailure(attempt: Int, failTimes: Int)
    case invalidOption(key: String, value: String)

    public var description: String {
        switch self {
        case .simulatedFailure(let attempt, let failTimes):
            "simulated failure on attempt \(attempt) (payload failTimes=\(failTimes))"
        case .invalidOption(let key, let value):
            "payload key \(key) must be a non-negative whole number of at most 2147483647, got \(value)"
        }
    }
}
