import Foundation
import Synchronization

/// How many event streams each user has open on the job API, so that one account cannot open
/// thousands: each open stream reads the store while its job runs, from the pool the claims and
/// outcome writes use. A backend (`API_TOKEN`) is not counted.
///
/// And how many all users have together: with sign-ups open (or anonymous sign-ins), many
/// accounts of eight streams each were no bound at all.
final class UserStreamCount: Sendable {
    private let open = Mutex<(perUser: [UUID: Int], total: Int)>(([:], 0))
    /// The most streams one user may have open at once.
    let limit: Int
    /// The most streams all users may have open at once on this process.
    let totalLimit: Int

    /// Why no place was given.
    enum Refusal: Error {
        case userFull
        case allFull
    }

    init(limit: Int, totalLimit: Int) {
        self.limit = limit
        self.totalLimit = totalLimit
    }

    /// A place for one more stream of `user`, held until the ``Slot`` goes.
    func reserve(for user: UUID) -> Result<Slot, Refusal> {
        let refusal = open.withLock { open -> Refusal? in
            guard open.total < totalLimit else { return .allFull }
            guard open.perUser[user, default: 0] < limit else { return .userFull }
            open.perUser[user, default: 0] += 1
            open.total += 1
            return nil
        }
        if let refusal { return .failure(refusal) }
        return .success(Slot(count: self, user: user))
    }

    private func release(_ user: UUID) {
        open.withLock { open in
            let left = open.perUser[user, default: 1] - 1
            open.perUser[user] = left > 0 ? left : nil
            open.total = max(open.total - 1, 0)
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
