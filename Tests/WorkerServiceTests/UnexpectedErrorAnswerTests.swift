import Foundation
import Testing
import WorkerCore
@testable import WorkerService

@Suite("UnexpectedErrorAnswer")
struct UnexpectedErrorAnswerTests {
    @Test("a client is told a job's state and its own request's fault; never the database's text (a refused privilege, an unreadable row)")
    func whatTheClientIsTold() {
        let id = UUID()
        for told in [JobStoreError.invalidTransition(id: id, from: .completed, action: "cancel"), .invalidJob("prompt is empty"), .jobNotFound(id)] {
            #expect(UnexpectedErrorAnswer<WorkerRequestContext>.message(for: told) == told.description)
        }
        // Before: these went out as they are, to a user's token as well.
        for withheld in [
            JobStoreError.notPermitted("PostgreSQL error 42501: permission denied for table secret_jobs"),
            .corruptRow(id: id.lowercasedText, reason: "payload is not JSON: {\"apiKey\":\"sk-123\""),
            .valueRejected("PostgreSQL error 22P02: invalid input syntax for type uuid: \"abc\""),
        ] {
            let message = UnexpectedErrorAnswer<WorkerRequestContext>.message(for: withheld)
            #expect(!message.contains("secret_jobs") && !message.contains("sk-123") && !message.contains("22P02"), "\(message)")
        }
    }
}
