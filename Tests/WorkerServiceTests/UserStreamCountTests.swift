import Foundation
import Testing
@testable import WorkerService

@Suite("User event streams")
struct UserStreamCountTests {
    @Test("each user has at most its own limit, and all users together at most the total; places come back when their slots go")
    func limits() throws {
        let count = UserStreamCount(limit: 2, totalLimit: 5)
        let users = (0..<4).map { _ in UUID() }
        var held: [UserStreamCount.Slot] = []
        // Two each for the first two users, then the third user's first: 5, the total.
        for user in [users[0], users[0], users[1], users[1], users[2]] {
            held.append(try count.reserve(for: user).get())
        }
        #expect(throws: UserStreamCount.Refusal.allFull) { try count.reserve(for: users[3]).get() }
        held.removeLast()
        #expect(throws: UserStreamCount.Refusal.userFull) { try count.reserve(for: users[0]).get() }
        held.append(try count.reserve(for: users[3]).get())
        #expect(throws: UserStreamCount.Refusal.allFull) { try count.reserve(for: users[2]).get() }
        held.removeAll()
        for user in users { _ = try count.reserve(for: user).get() }
    }
}
