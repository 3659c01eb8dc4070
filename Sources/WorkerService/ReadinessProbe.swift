import Logging

/// Answers `GET /ready` from a list of ``ReadinessCheck``s.
///
/// Why not ask the database on every request: a flood of `/ready` requests (a misconfigured
/// load balancer, many replicas of a sidecar) would then take connections from the pool that
/// lease renewals need, and a slow database would be asked again before it answered. So each
/// round-trip check (the store) is cached for `cacheInterval` (1 s) and single-flight: however
/// many requests arrive, at most one call per check is running at any time, and its one result
/// answers every request that waited for it. A call that outlives its timeout still counts as
/// running: until it returns, requests get the timeout failure rather than a second call.
///
/// Checks of the process's own state (the processor) are asked on every request: they are
/// cheap, and a shutdown must show at once.
public struct ReadinessProbe: Sendable {
    private enum Entry: Sendable {
        case immediate(String, @Sendable () -> String?)
        case roundTrip(String, CachedRoundTrip)
    }

    private let entries: [Entry]

    /// - Parameters:
    ///   - checks: what `/ready` checks; names must be distinct.
    ///   - cacheInterval: how long one round trip's result answers further requests.
    ///   - logger: where the round trips' real errors go (on change: a failure at warning level,
    ///     the recovery at info, repeats at debug), since the HTTP body leaves them out.
    public init(checks: [ReadinessCheck], cacheInterval: Duration = .seconds(1), logger: Logger) {
        precondition(Set(checks.map(\.name)).count == checks.count, "readiness check names must be distinct")
        entries = checks.map { check in
            switch check.kind {
            case .immediate(let failure):
                return .immediate(check.name, failure)
            case .roundTrip(let subject, let timeout, let call):
                return .roundTrip(
                    check.name,
                    CachedRoundTrip(name: check.name, subject: subject, timeout: timeout, cacheInterval: cacheInterval, logger: logger, call: call)
                )
            }
        }
    }

    /// Each check's failure text, `nil` for a passing check; all round trips run concurrently.
    public func evaluate() async -> [String: String?] {
        await withTaskGroup(of: (String, String?).self) { group in
            var results: [String: String?] = [:]
            for entry in entries {
                switch entry {
                case .immediate(let name, let failure):
                    results[name] = .some(failure())
                case .roundTrip(let name, let cache):
                    group.addTask { (name, await cache.result()) }
                }
            }
            for await (name, failure) in group { results[name] = .some(failure) }
            return results
        }
    }
}
