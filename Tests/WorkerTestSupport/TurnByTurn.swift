import Testing
import WorkerCore

/// Claims and completes the queue's jobs one claim at a time, `claims` times, expecting exactly
/// one job each time (a session lets one turn through at a time); returns their prompts in the
/// order they were claimed.
public func claimOneByOne(_ store: any JobStore, claims: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String] {
    var order: [String] = []
    for _ in 0..<claims {
        let claimed = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
        #expect(claimed.count == 1, sourceLocation: sourceLocation)
        order += claimed.map(\.job.prompt)
        _ = try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) })
    }
    return order
}
