import Foundation
import Synchronization

/// How many event streams each user has open on the job API, so that one account cannot open
/// thousands: each open stream reads the store while its job runs, from the pool the claims and
/// outcome writes use. A backend (`API_TOKEN`) is not counted.
final class UserStreamCount: Sendable {
    private let open = Mutex<[UUID: Int]>([:])
    /// The most streams one user may have open at once.
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// A place for one more stream of `user`, held until the ``Slot`` goes (`nil`: `user` has
    /// ``limit`` open).
    func reserve(for user: UUID) -> Slot? {
        let reserved = open.withLock { open -> Bool in
            guard open[user, default: 0] < limit else { return false }
            open[user, default: 0] += 1
            return true
        }
        return reserved ? Slot(count: self, user: user) : nil
    }

    private func release(_ user: UUID) {
        open.withLock { open in
            let left = open[user, default: 1] - 1
            open[user] = left > 0 ? left : nil
        }
    }

    /// One open stream, given back when the last reference to it goes: the response body that
    /// streams holds it, so the place is freed however the stream ends (finished, the client
    /// gone, or the body never written because the connection closed first).
    final class Slot: Sendable {
        private let count: UserStreamCount
        private let user: UUID

        fileprivate init(count: UserStreamCount, user: UUID) {
            self.count = count
            self.user = user
        }

        deinit { count.release(user) }
    }
}
