import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals
import WorkerCore

/// Turns SIGTERM, SIGINT and SIGHUP into a graceful shutdown, at any point of the worker's life.
///
/// SIGHUP is included because its default action ends the process at once (exit 129) and leaves
/// running jobs `processing` until their leases expire: a closed terminal or SSH session, `kill -HUP`
/// and some supervisors send it. The worker has no configuration to reload, so it stops cleanly.
///
/// Before the service group exists (start-up, e.g. waiting for the database) a signal ends
/// start-up; afterwards the first signal shuts the group down gracefully and a second one tells
/// the processor to give its running jobs back at once.
final class ShutdownCoordinator: Sendable {
    private struct State {
        var requested = false
        var group: ServiceGroup?
        var processor: JobProcessor?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let logger: Logger

    /// The signals that stop the worker gracefully.
    static let signals: [UnixSignal] = [.sigterm, .sigint, .sighup]

    init(logger: Logger) {
        self.logger = logger
    }

    var isRequested: Bool { state.withLock { $0.requested } }

    /// Hands over the running group; triggers its shutdown at once if a signal came first.
    func register(group: ServiceGroup, processor: JobProcessor) async {
        let requested = state.withLock { state -> Bool in
            state.group = group
            state.processor = processor
            return state.requested
        }
        if requested {
            // As for a signal after this point: the group stops its services one at a time, the
            // processor after the others, and until its turn it would claim and start jobs (a
            // signal during start-up, once the migration let it go).
            processor.stopClaiming()
            await group.triggerGracefulShutdown()
        }
    }

    /// Sleeps for `duration`, returning early when shutdown is requested.
    func sleep(for duration: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.waitForRequest() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRequest() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.requested || Task.isCancelled { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// What the first signal does: ends start-up's waits, or shuts the registered group down.
    func requestShutdown() async {
        let (group, processor, waiters) = state.withLock { state -> (ServiceGroup?, JobProcessor?, [CheckedContinuation<Void, Never>]) in
            state.requested = true
            defer { state.waiters = [] }
            return (state.group, state.processor, state.waiters)
        }
        for waiter in waiters { waiter.resume() }
        // At once: the group stops its services one at a time, the processor after others.
        processor?.stopClaiming()
        await group?.triggerGracefulShutdown()
    }

    /// Watches the signals until cancelled.
    func handleSignals() async {
        let signals = await UnixSignalsSequence(trapping: Self.signals)
        var received = 0
        for await signal in signals {
            received += 1
            if received == 1 {
                logger.info("Received shutdown signal", metadata: ["signal": .string(signal.description)])
                await requestShutdown()
            } else {
                logger.warning("Received second shutdown signal: giving running jobs back now", metadata: ["signal": .string(signal.description)])
                state.withLock { $0.processor }?.skipShutdownWait()
            }
        }
    }
}
