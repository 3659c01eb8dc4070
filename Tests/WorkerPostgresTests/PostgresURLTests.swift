import Testing
@testable import WorkerPostgres

@Suite("PostgresURL")
struct PostgresURLTests {
    @Test("a full URL with every part")
    func full() throws {
        let url = try PostgresURL("postgres://worker:secret@db.example.com:6000/jobs?sslmode=require&application_name=w1")
        #expect(url.host == "db.example.com" && url.port == 6000 && url.username == "worker" && url.password == "secret")
        #expect(url.database == "jobs" && url.sslMode == .require && url.parameters == ["application_name": "w1"])
        #expect(!url.isTransactionPooler)
    }

    @Test("defaults: port 5432, sslmode prefer, database named after the user; postgresql:// works too")
    func defaults() throws {
        let url = try PostgresURL("postgresql://alice@localhost")
        #expect(url.port == 5432 && url.sslMode == .prefer && url.database == "alice" && url.password == nil)
    }

    @Test("passwords with @, : and % percent-encoded, and an unencoded @", arguments: [
        ("postgres://u:p%40ss%3Aw%25rd@h/d", "p@ss:w%rd"),
        ("postgres://u:p@ss:word@h:5433/d", "p@ss:word"),
        ("postgres://u:a:b:c@h/d", "a:b:c"),
    ])
    func passwords(text: String, password: String) throws {
        let url = try PostgresURL(text)
        #expect(url.password == password)
        #expect(url.host == "h" && url.database == "d")
        #expect(!url.redacted.contains(password))
    }

    @Test("Supabase direct, session pooler and transaction pooler strings")
    func supabase() throws {
        let direct = try PostgresURL("postgresql://postgres:pw@db.abcdefghij.supabase.co:5432/postgres")
        #expect(!direct.isTransactionPooler)
        let session = try PostgresURL("postgres://postgres.abcdefghij:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres")
        #expect(session.username == "postgres.abcdefghij" && !session.isTransactionPooler)
        let transaction = try PostgresURL("postgres://postgres.abcdefghij:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres")
        #expect(transaction.isTransactionPooler)
        #expect(try PostgresURL("postgres://u:p@h:5432/d?pgbouncer=true").isTransactionPooler)
    }

    @Test("IPv6 hosts")
    func ipv6() throws {
        let url = try PostgresURL("postgres://u:p@[::1]:5439/d")
        #expect(url.host == "::1" && url.port == 5439)
    }

    @Test("malformed URLs name the part that is wrong", arguments: [
        ("mysql://u@h/d", "scheme"), ("postgres://u:p@:5432/d", "host"), ("postgres://u:p@h:99999/d", "port"),
        ("postgres://u:p@h:abc/d", "port"), ("postgres://u:p@h/d?sslmode=verify-ca", "sslmode"),
        ("postgres://u:p%zz@h/d", "password"), ("postgres://:p@h/d", "user name"), ("postgres://u:p@[::1/d", "host"),
    ])
    func malformed(text: String, part: String) {
        let error = #expect(throws: PostgresURLError.self) { _ = try PostgresURL(text) }
        #expect(error?.part == part)
        #expect(error?.description.contains("DATABASE_URL") == true)
    }
}
