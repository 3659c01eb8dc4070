import Logging
import Synchronization
import WorkerCore

/// One round-trip readiness check (e.g. the database ping), cached and single-flight: the
/// engine behind ``ReadinessProbe``.
///
/// The first request that finds no fresh result makes the call itself (bounded by the timeout
/// through ``withTimeout(_:operation:_:)``); requests arriving meanwhile wait for that call's
/// result instead of making their own. A call abandoned at its timeout keeps the check "in
/// flight" until it really returns, so a hanging database is never asked twice at once.
final class CachedRoundTrip: Sendable {
    /// How the last call ended.
    private enum Outcome: Sendable, Equatable {
        case passed
        case timedOut
        /// The error's text: for the log only, never for HTTP clients.
        case failed(String)

        var isPassing: Bool { self == .passed }
    }

    private struct State {
        var latest: (outcome: Outcome, at: ContinuousClock.Instant)?
        /// A call is running, or its result has not been handed out yet.
        var inFlight = false
        /// The running call's requests have their answer (it timed out, or it returned).
        var answered = false
        /// The running call returned (perhaps long after its timeout).
        var callReturned = false
        var waiters: [CheckedContinuation<String?, Never>] = []
    }

    private let name: String
    private let subject: String
    private let timeout: Duration
    private let cacheInterval: Duration
    private let logger: Logger
    private let call: @Sendable () async throws -> Void
    private let state = Mutex(State())

    init(name: String, subject: String, timeout: Duration, cacheInterval: Duration, logger: Logger, call: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.subject = subject
        self.timeout = timeout
        self.cacheInterval = cacheInterval
        self.logger = logger
        self.call = call
    }

    /// Why the check fails, in words for HTTP clients, or `nil` when it passes.
    func result() async -> String? {
        enum Role { case answered(Outcome), caller, waiter }
        let role = state.withLock { state -> Role in
            if let latest = state.latest, latest.at.duration(to: .now) < cacheInterval { return .answered(latest.outcome) }
            if state.inFlight {
                // A call that timed out and still hangs: its timeout is all there is to know.
                if state.answered, let latest = state.latest { return .answered(latest.outcome) }
                return .waiter
            }
            state.inFlight = true
            state.answered = false
            state.callReturned = false
            return .caller
        }
        switch role {
        case .answered(let outcome):
            return publicText(outcome)
        case .caller:
            return publicText(await callAndPublish())
        case .waiter:
            // Bounded: the caller answers every waiter by its timeout at the latest.
            return await withCheckedContinuation { continuation in
                let answer = state.withLock { state -> Outcome? in
                    if state.answered || !state.inFlight { return state.latest?.outcome ?? .timedOut }
                    state.waiters.append(continuation)
                    return nil
                }
                if let answer { continuation.resume(returning: publicText(answer)) }
            }
        }
    }

    /// Makes the call, records its outcome and answers the waiters.
    private func callAndPublish() async -> Outcome {
        let outcome: Outcome
        do {
            try await withTimeout(timeout, operation: subject) { [self] in
                // Runs when the call really returns, which after a timeout is later than the answer.
                defer { callReturned() }
                try await call()
            }
            outcome = .passed
        } catch is TimeoutError {
            outcome = .timedOut
        } catch {
            outcome = .failed("\(error)")
        }
        let (previous, waiters) = state.withLock { state in
            let previous = state.latest?.outcome
            state.latest = (outcome, .now)
            state.answered = true
            if state.callReturned { state.inFlight = false }
            defer { state.waiters = [] }
            return (previous, state.waiters)
        }
        let text = publicText(outcome)
        for waiter in waiters { waiter.resume(returning: text) }
        log(outcome, previous: previous)
        return outcome
    }

    /// The call returned: the check is no longer in flight once its answer is out too.
    private func callReturned() {
        state.withLock { state in
            state.callReturned = true
            if state.answered { state.inFlight = false }
        }
    }

    /// The text `/ready` shows: names the subject, never the error (which can hold host names,
    /// user names or SQL).
    private func publicText(_ outcome: Outcome) -> String? {
        switch outcome {
        case .passed: nil
        case .timedOut: "\(subject) did not answer within \(Self.describe(timeout))"
        case .failed: "\(subject) is unavailable (the worker logs why)"
        }
    }

    /// Logs changes only: a flood of requests against a failing database logs once, not per request.
    private func log(_ outcome: Outcome, previous: Outcome?) {
        var metadata: Logger.Metadata = ["check": .string(name)]
        switch outcome {
        case .passed: break
        case .timedOut: metadata["error"] = .string("\(subject) did not answer within \(Self.describe(timeout))")
        case .failed(let error): metadata["error"] = .string(error)
        }
        if outcome == previous {
            logger.debug("Readiness check unchanged", metadata: metadata)
        } else if outcome.isPassing {
            if previous != nil { logger.info("Readiness check passing again", metadata: metadata) }
        } else {
            logger.warning("Readiness check failing", metadata: metadata)
        }
    }

    /// `1 s`, `1.5 s`, `250 ms`.
    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.inMilliseconds
        if milliseconds >= 1000 {
            let seconds = Double(milliseconds) / 1000
            return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
        }
        return "\(milliseconds) ms"
    }
}
