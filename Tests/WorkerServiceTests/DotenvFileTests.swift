import Foundation
import Testing
@testable import WorkerService

/// `.env` files as Node's dotenv reads them (issue 13: quotes were kept, `# comments` refused).
@Suite("DotenvFile")
struct DotenvFileTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    @Test("a Node/Supabase project's .env parses to exact values")
    func nodeProject() throws {
        let file = try DotenvFile(contentsOf: Self.fixtures.appendingPathComponent("node-project.env").path)
        #expect(file.values == [
            "DATABASE_URL": "postgres://postgres.abcdefghijklmnop:Sup3r%23Secret@aws-0-eu-central-1.pooler.supabase.com:5432/postgres?sslmode=require",
            "DIRECT_URL": "postgresql://postgres:Sup3r%23Secret@db.abcdefghijklmnop.supabase.co:5432/postgres",
            "NEXT_PUBLIC_SUPABASE_URL": "https://abcdefghijklmnop.supabase.co",
            "NEXT_PUBLIC_SUPABASE_ANON_KEY": "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl",
            "SUPABASE_SERVICE_ROLE_KEY": "",
            "NODE_ENV": "development",
            "MAX_CONCURRENT_JOBS": "4",
            "WORKER_QUEUES": "default,mail:send",
            "LOG_LEVEL": "debug",
            "CALLBACK_URL": "http://localhost:3000/#/jobs",
            "GREETING": "Hello\nWorld\tand\rmore",
            "SINGLE_QUOTED": #"no \n expansion # here"#,
            "HASH_QUOTED": "value # not a comment",
            "EMPTY_QUOTED": "",
            "PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----",
            "FEATURE_FLAG": "second",
        ])
    }

    @Test("one line each", arguments: [
        ("A=plain", "plain"),
        ("A = spaced  ", "spaced"),
        ("A=4 # four", "4"),
        ("A=4\t# four", "4"),
        ("A=x#y", "x#y"),
        ("A=#fff", "#fff"),
        ("A= # only a comment", ""),
        ("A=", ""),
        ("A=\"\"", ""),
        ("A='q'  # after", "q"),
        ("A=\"q\"# after", "q"),
        ("A=`it's \"both\"`", "it's \"both\""),
        ("A=\"a\\nb\"", "a\nb"),
        ("A='a\\nb'", "a\\nb"),
        ("A=`a\\nb`", "a\\nb"),
        ("A=\"say \\\"hi\\\"\"", "say \\\"hi\\\""),
        ("A=\"unclosed", "\"unclosed"),
        ("A=\"x\" trailing", "\"x\" trailing"),
        ("A=inner \"quotes\" stay", "inner \"quotes\" stay"),
        ("export A=exported", "exported"),
        ("export\tA=tab", "tab"),
        ("A=a=b=c", "a=b=c"),
        ("A=pässwörd ✓", "pässwörd ✓"),
        // As Node's dotenv: a final backslash before the closing quote is the value's own.
        ("A=\"abc\\\"", "abc\\"),
        ("A='C:\\tmp\\'", "C:\\tmp\\"),
        ("A: colon form", "colon form"),
        ("export A: exported colon", "exported colon"),
    ])
    func line(text: String, value: String) {
        #expect(DotenvFile(parsing: text + "\n").values["A"] == value)
        #expect(DotenvFile(parsing: text).values["A"] == value, "without a final newline")
    }

    @Test("comments, blank lines, lines without = and bad names are skipped; CRLF and a BOM are fine")
    func skipped() {
        let file = DotenvFile(parsing: "\u{FEFF}# c\r\n\r\n   # indented comment\r\nnot a pair\r\nBAD NAME=1\r\nexport=yes\r\nC:no-space\r\nB=2\r\n")
        #expect(file.values == ["export": "yes", "B": "2"])
    }

    @Test("a multi-line quoted value does not swallow the lines after it")
    func multiLine() {
        let file = DotenvFile(parsing: "A='one\ntwo'\nB=\"three\n\nfour\" # note\nC=5\n")
        #expect(file.values == ["A": "one\ntwo", "B": "three\n\nfour", "C": "5"])
    }

    @Test("a missing file is empty; a directory is an error naming the path")
    func reading() throws {
        #expect(try DotenvFile(contentsOf: "/nonexistent/.env").values.isEmpty)
        let error = #expect(throws: DotenvFile.ReadError.self) { _ = try DotenvFile(contentsOf: NSTemporaryDirectory()) }
        #expect(error?.description.contains(NSTemporaryDirectory()) == true)
    }

    @Test("through the configuration: the environment wins over the file, and secrets stay secret")
    func precedence() async throws {
        let path = Self.fixtures.appendingPathComponent("node-project.env").path
        let configuration = try await WorkerConfiguration.load(environment: ["MAX_CONCURRENT_JOBS": "9"], environmentFile: path)
        #expect(configuration.maxConcurrentJobs == 9)
        #expect(configuration.queues == ["default", "mail:send"])
        #expect(configuration.store == .postgres(
            url: "postgres://postgres.abcdefghijklmnop:Sup3r%23Secret@aws-0-eu-central-1.pooler.supabase.com:5432/postgres?sslmode=require"))
        #expect(!configuration.redactedSummary.contains { $0.value.contains("Sup3r") })
    }
}
