import Foundation

/// Runs blocking work (a child process waited for, `readDataToEndOfFile`) on a thread of its own.
///
/// The cooperative pool has as many threads as cores, two on the project's machines: a test that
/// blocks one stalls every other test of the process with it, and timing-sensitive ones fail.
public func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}
