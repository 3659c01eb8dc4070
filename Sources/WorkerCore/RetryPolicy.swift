/// Exponential backoff with jitter between attempts of a failing job.
///
/// The delay before attempt `n + 1` is `base * 2^(n-1)`, capped at `maximum`, then scaled by a
/// random factor in `1 - jitter ... 1` so that jobs failing together do not retry together.
public struct RetryPolicy: Sendable, Hashable {
    public var base: Duration
    public var maximum: Duration
    /// Fraction of the delay that is randomised, in `0...1`.
    public var jitter: Double

    public init(base: Duration = .seconds(1), maximum: Duration = .seconds(600), jitter: Double = 0.5) {
        self.base = base
        self.maximum = maximum
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The delay after `attempt` (1-based) failed.
    public func delay(afterAttempt attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(afterAttempt: attempt, using: &generator)
    }

    /// The delay after `attempt` (1-based) failed, drawing jitter from `generator`.
    public func delay(afterAttempt attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let exponent = min(max(attempt - 1, 0), 40)
        let baseSeconds = base.inSeconds
        let raw = min(baseSeconds * Double(1 << min(exponent, 62)), maximum.inSeconds)
        let factor = jitter == 0 ? 1 : Double.random(in: (1 - jitter)...1, using: &generator)
        return .milliseconds(Int64((raw * factor * 1000).rounded()))
    }

    /// What to record for a failed attempt: a retry while attempts remain, otherwise final failure.
    public func outcome(forFailedAttempt attempt: Int, maxAttempts: Int, error: String) -> JobOutcome {
        attempt < maxAttempts ? .retry(error: error, delay: delay(afterAttempt: attempt)) : .failed(error: error)
    }
}
