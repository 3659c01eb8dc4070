import Foundation
import PostgresNIO
import Testing
import WorkerCore
@testable import WorkerPostgres

/// An enqueue whose transaction does not commit after the server ran the statement: a deferred
/// constraint trigger makes the commit fail on purpose.
@Suite("PostgreSQL: an enqueue answers after its commit", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresEnqueueCommitTests {
    // This test hung in about one run of three while the enqueue was one statement (the commit
    // failed after the statement's CommandComplete, and PostgresNIO never answered that call or
    // the next): the enqueue now commits with a `COMMIT` of its own.
    @Test("an enqueue whose commit fails is an error, never ids of jobs that do not exist; the store goes on working")
    func enqueueConfirmedAfterCommit() async throws {
        try await TestDatabase.withStore { store in
            let name = "fail_commit_\(UUID().uuidString.prefix(8).lowercased())"
            _ = try await TestDatabase.execute("""
                CREATE FUNCTION \(name)() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.prompt = 'doomed' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$
                """, on: store)
            _ = try await TestDatabase.execute("""
                CREATE CONSTRAINT TRIGGER \(name) AFTER INSERT ON \(store.schema.table)
                    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION \(name)();
                """, on: store)
            func check() async throws {
                // Before: the ids came back and no job had them.
                do {
                    let answered = try await store.enqueue([NewJob(prompt: "doomed")])
                    Issue.record("the enqueue answered ids \(answered) for jobs that were not stored")
                } catch {
                    // As expected, whichever statement PostgresNIO hands the failed commit to.
                }
                // A connection closed for the failed commit can fail the next call once.
                var fine: [UUID] = []
                for _ in 0..<3 where fine.isEmpty { fine = (try? await store.enqueue([NewJob(prompt: "fine")])) ?? [] }
                #expect(try await store.job(id: try #require(fine.first))?.prompt == "fine")
                #expect(try await store.stats().pending == 1)
            }
            do {
                try await check()
            } catch {
                _ = try? await TestDatabase.execute("DROP FUNCTION \(name)() CASCADE", on: store)
                throw error
            }
            _ = try await TestDatabase.execute("DROP FUNCTION \(name)() CASCADE", on: store)
        }
    }
}
