import WorkerCore

/// One thing `GET /ready` checks, by name (the key in the response's `checks`).
///
/// Two kinds, because they cost differently: a check of the process's own state is asked on
/// every request, while a round trip to something shared (the database) goes through
/// ``ReadinessProbe``'s cache and single flight, so that probe traffic never competes with the
/// lease renewals for the connection pool.
public struct ReadinessCheck: Sendable {
    enum Kind: Sendable {
        /// Answered from memory; returns why the check fails, or `nil`.
        case immediate(@Sendable () -> String?)
        /// A call to `subject`, bounded by `timeout`; passes when `call` returns.
        case roundTrip(subject: String, timeout: Duration, call: @Sendable () async throws -> Void)
    }

    public let name: String
    let kind: Kind

    /// A check of the process's own state, cheap enough for every request: `failure` returns
    /// why the worker is not ready (shown to HTTP clients), or `nil` when it is.
    public static func immediate(_ name: String, failure: @escaping @Sendable () -> String?) -> ReadinessCheck {
        ReadinessCheck(name: name, kind: .immediate(failure))
    }

    /// A round trip to `subject` (e.g. "the database"): it fails when `call` throws or takes longer
    /// than `timeout`. HTTP clients only learn which of the two happened, in words naming `subject`:
    /// an error's text can hold host names, user names or SQL, so it goes to the log instead.
    public static func roundTrip(
        _ name: String,
        subject: String,
        timeout: Duration = .seconds(1),
        call: @escaping @Sendable () async throws -> Void
    ) -> ReadinessCheck {
        ReadinessCheck(name: name, kind: .roundTrip(subject: subject, timeout: timeout, call: call))
    }

    /// `store`: the database answers a trivial query within 1 s.
    public static func store(_ store: any JobStore) -> ReadinessCheck {
        .roundTrip("store", subject: "the database", timeout: .seconds(1)) { try await store.ping() }
    }

    /// `processor`: the processor is claiming jobs (not starting, not shutting down), and its
    /// claims are not failing one after another (the database may still answer `SELECT 1`: a
    /// table lock held past the store timeout, a privilege taken away).
    public static func processor(_ processor: JobProcessor) -> ReadinessCheck {
        .immediate("processor") {
            guard processor.isClaiming else { return "not claiming (starting or shutting down)" }
            let failures = processor.claimFailuresInARow
            guard failures < JobProcessor.claimFailuresMakingUnready else {
                return "the last \(failures) claims failed (the log says why: Failed to claim jobs)"
            }
            if let fault = processor.workerFault {
                // Not the error's text: the probe answers anyone who can reach the port, and
                // the error may name paths and users of this machine. The log has it.
                return "the last \(fault.count) jobs could not be run on this worker, and went back to the queue (the log says why: Not claiming for a while)"
            }
            return nil
        }
    }

    /// `leases`: this worker's lease renewals have not failed for longer than half a lease.
    public static func leases(_ processor: JobProcessor) -> ReadinessCheck {
        .immediate("leases") {
            processor.leaseRenewalsFailing
                ? "lease renewals have failed for longer than half a lease (LEASE_DURATION_MS; the log says why: Lease renewal failed)" : nil
        }
    }

    /// `events`: the store has taken this worker's job events within the last lease, when it
    /// had any to take (a write that keeps failing holds every job: see
    /// ``JobProcessor/eventWritesStalled``).
    public static func events(_ processor: JobProcessor) -> ReadinessCheck {
        .immediate("events") {
            processor.eventWritesStalled
                ? "job events could not be written for longer than a lease (LEASE_DURATION_MS; the log says why: Could not write job events)" : nil
        }
    }

    /// `outcomes`: the store has taken this worker's job outcomes within the last lease. A
    /// worker whose finished jobs cannot be recorded is not ready, even when the database
    /// answers a trivial query (a value it keeps refusing, a lost write privilege).
    public static func outcomes(_ processor: JobProcessor) -> ReadinessCheck {
        .immediate("outcomes") {
            processor.outcomeWritesStalled ? "job outcomes could not be written for longer than a lease (LEASE_DURATION_MS)" : nil
        }
    }
}
