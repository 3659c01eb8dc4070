import Foundation
import NIOSSL
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
        #expect(transaction.isTransactionPooler && transaction.transactionPoolerSign == "port 6543")
        // The warning names what marked it: not "port 6543" for a pooler on 5432.
        #expect(try PostgresURL("postgres://u:p@h:5432/d?pgbouncer=true").transactionPoolerSign == "pgbouncer=true")
    }

    @Test("sslrootcert: with require it verifies as verify-ca does (libpq's rule), verify-ca and verify-full trust it; an unreadable file is named")
    func rootCertificate() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ca-\(UUID()).crt")
        try "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        func tls(_ query: String) throws -> TLSConfiguration? {
            PostgresJobStore.tlsConfiguration(for: try PostgresURL("postgres://u:p@h/d?\(query)"))
        }
        // Before: sslrootcert was ignored, and require connected with no verification at all.
        let required = try #require(try tls("sslmode=require&sslrootcert=\(file.path)"))
        #expect(required.certificateVerification == .noHostnameVerification && required.trustRoots == .file(file.path))
        #expect(try tls("sslmode=require")?.certificateVerification == CertificateVerification.none)
        #expect(try tls("sslmode=verify-ca")?.certificateVerification == .noHostnameVerification)
        let full = try #require(try tls("sslmode=verify-full&sslrootcert=\(file.path)"))
        #expect(full.certificateVerification == .fullVerification && full.trustRoots == .file(file.path))
        #expect(try tls("sslmode=verify-full&sslrootcert=system")?.trustRoots == .default)
        #expect(try tls("sslmode=disable") == nil)
        #expect(try PostgresURL("postgres://u@h/d?sslmode=verify-ca&sslrootcert=\(file.path)").redacted.contains("sslrootcert=\(file.path)"))
        let missing = try #require(throws: PostgresURLError.self) { _ = try PostgresURL("postgres://u:p@h/d?sslrootcert=/nonexistent/ca.crt") }
        #expect(missing.part == "sslrootcert" && missing.description.contains("/nonexistent/ca.crt"))
        // A client certificate cannot be presented: refused, not ignored.
        #expect(throws: PostgresURLError.self) { _ = try PostgresURL("postgres://u:p@h/d?sslcert=c.crt&sslkey=c.key") }
    }

    @Test("user, password, dbname, host and port in the query are used, as libpq uses them (before: ignored, the worker signed in as postgres)")
    func connectionParametersInTheQuery() throws {
        let url = try PostgresURL("postgresql://localhost:1/db?user=u&password=s%40cret&host=db.example.com&port=6000&dbname=jobs&application_name=w")
        #expect(url.username == "u" && url.password == "s@cret" && url.host == "db.example.com" && url.port == 6000 && url.database == "jobs")
        #expect(url.parameters == ["application_name": "w"])
        #expect(!url.redacted.contains("s@cret"))
        #expect(try PostgresURL("postgresql://h?user=bob").database == "bob")
        #expect(throws: PostgresURLError.self) { _ = try PostgresURL("postgresql://h/d?port=99999") }
    }

    @Test("IPv6 hosts")
    func ipv6() throws {
        let url = try PostgresURL("postgres://u:p@[::1]:5439/d")
        #expect(url.host == "::1" && url.port == 5439)
    }

    @Test("malformed URLs name the part that is wrong", arguments: [
        ("mysql://u@h/d", "scheme"), ("postgres://u:p@:5432/d", "host"), ("postgres://u:p@h:99999/d", "port"),
        ("postgres://u:p@h:abc/d", "port"), ("postgres://u:p@h/d?sslmode=allow", "sslmode"),
        ("postgres://u:p%zz@h/d", "password"), ("postgres://:p@h/d", "user name"), ("postgres://u:p@[::1/d", "host"),
    ])
    func malformed(text: String, part: String) {
        let error = #expect(throws: PostgresURLError.self) { _ = try PostgresURL(text) }
        #expect(error?.part == part)
        #expect(error?.description.contains("DATABASE_URL") == true)
    }
}

/// Passwords with URL delimiters in them, raw and percent-encoded (issue 13: part of a password
/// appeared in an error when it held `?` or `/`).
@Suite("PostgresURL credentials")
struct PostgresURLCredentialTests {
    @Test("a password holding a URL delimiter, raw, is parsed whole", arguments: [
        ("postgres://app:s3cr3tQ?x/y@host/app", "app", "s3cr3tQ?x/y", "host", 5432, "app"),
        ("postgres://app:pa/ss@db.example.com:6000/jobs", "app", "pa/ss", "db.example.com", 6000, "jobs"),
        ("postgres://app:pa#ss@h/d", "app", "pa#ss", "h", 5432, "d"),
        ("postgres://app:pa?ss@h:5433", "app", "pa?ss", "h", 5433, "app"),
        ("postgres://app:p@ss@h/d", "app", "p@ss", "h", 5432, "d"),
        ("postgres://app:a@b/c@h/d", "app", "a@b/c", "h", 5432, "d"),
        ("postgres://app:p@ss?w@h/d", "app", "p@ss?w", "h", 5432, "d"),
        ("postgres://app:a:b:c@h/d", "app", "a:b:c", "h", 5432, "d"),
        ("postgres://app:pässwörd✓@h/d", "app", "pässwörd✓", "h", 5432, "d"),
        ("postgres://app:?/#@:@[::1]:5439/d", "app", "?/#@:", "::1", 5439, "d"),
    ])
    func raw(text: String, user: String, password: String, host: String, port: Int, database: String) throws {
        let url = try PostgresURL(text)
        #expect(url.username == user)
        #expect(url.password == password)
        #expect(url.host == host)
        #expect(url.port == port)
        #expect(url.database == database)
        #expect(!url.redacted.contains(password))
    }

    @Test("a password holding a URL delimiter, percent-encoded, is decoded", arguments: [
        ("postgres://app:s3cr3tQ%3Fx%2Fy@host/app", "s3cr3tQ?x/y"),
        ("postgres://app:pa%23ss%40w%3Ad%25@h/d", "pa#ss@w:d%"),
        ("postgres://app:p%C3%A4ss%E2%9C%93@h/d", "päss✓"),
    ])
    func encoded(text: String, password: String) throws {
        let url = try PostgresURL(text)
        #expect(url.username == "app")
        #expect(url.password == password)
        #expect(["h", "host"].contains(url.host) && url.port == 5432)
    }

    @Test("an @ in the query string does not end the credentials")
    func atInQuery() throws {
        let url = try PostgresURL("postgres://app:pw@db.example.com:6000/jobs?application_name=a@b&sslmode=require")
        #expect(url.username == "app" && url.password == "pw")
        #expect(url.host == "db.example.com" && url.port == 6000 && url.database == "jobs")
        #expect(url.parameters == ["application_name": "a@b"] && url.sslMode == .require)
        let withDelimiters = try PostgresURL("postgres://app:s3?c/r@h/d?application_name=worker@host")
        #expect(withDelimiters.password == "s3?c/r" && withDelimiters.host == "h" && withDelimiters.parameters == ["application_name": "worker@host"])
    }

    /// Malformed URLs whose password is `s3cr3tQ` plus a delimiter: no error shows any of it.
    @Test("no error for a malformed URL contains any part of the password", arguments: [
        "postgres://app:s3cr3tQ?x/y@host:abc/app",
        "postgres://app:s3cr3tQ?x/y@host:99999/app",
        "postgres://app:s3cr3tQ?x/y@/app",
        "postgres://app:s3cr3tQ?x/y@host/app?sslmode=bogus",
        "postgres://app:s3cr3tQ%zz@host/app",
        "postgres://app:s3cr3tQ%@host/app",
        "postgres://app:s3cr3tQ#x/y@[::1/app",
        "postgres://app:s3cr3tQ:x/y@host:port/app",
        "postgres://app:s3cr3tQ/x@host@/app",
        "postgres://app:s3cr3tQ?x/y",
        "postgres://app:s3cr3tQ/x",
        "postgres://:s3cr3tQ?x@host/app",
    ])
    func noPasswordInErrors(text: String) {
        let error = #expect(throws: PostgresURLError.self) { _ = try PostgresURL(text) }
        let message = error?.description ?? ""
        #expect(message.contains("DATABASE_URL"))
        for fragment in ["s3cr3t", "cr3tQ", "3tQ", "Q?x", "x/y", "Q%", "Q#", "Q:x", "Q/x"] {
            #expect(!message.contains(fragment), "\(message) shows \(fragment)")
        }
    }
}
