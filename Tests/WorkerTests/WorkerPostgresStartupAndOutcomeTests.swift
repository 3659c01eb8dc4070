import Foundation
import Testing
import WorkerTestSupport

/// Real `worker` processes against PostgreSQL in the situations issue 13 reproduced: output the
/// database refuses, a role without DDL rights, a database that refuses connections.
@Suite("worker run on PostgreSQL: refused outcomes, privileges, start-up errors", .serialized, .enabled(if: TestPostgres.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct WorkerPostgresStartupAndOutcomeTests {
    @Test("a command printing a NUL byte: its job completes without it, and the jobs beside it are recorded too")
    func nulOutput() async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let port = try freePort()
        let environment = WorkerPostgresRunTests.environment(table: table, port: port, [
            "JOB_HANDLER": "command", "JOB_SHELL": "true", "MAX_CONCURRENT_JOBS": "4",
            "JOB_COMMAND": #"if [ "$(cat)" = poison ]; then printf 'a\000b'; printf 'bad\000err' >&2; exit 3; else printf 'a\000b'; fi"#,
        ])
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let lines = ["one", "two", "three", "poison"].map { #"{"prompt":"\#($0)","maxAttempts":1}"# }.joined(separator: "\n")
        let enqueue = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment, directory: folder.url, stdin: Data(lines.utf8))
        #expect(enqueue.status == 0)
        // Before: the batch failed forever (22P05 / 22021) and all four stayed `processing`.
        let done = try await eventually("recorded", timeout: .seconds(20)) {
            try await WorkerPostgresRunTests.count(table, "status IN ('completed', 'failed')") == 4
        }
        let statuses = (try? await TestPostgres.sql("SELECT status || ' ' || count(*) FROM public.\(table) GROUP BY status")) ?? "?"
        #expect(done, "statuses: \(statuses)")
        #expect(try await TestPostgres.sql("SELECT DISTINCT result->>'stdout' FROM public.\(table) WHERE status = 'completed'") == "ab")
        #expect(try await TestPostgres.sql("SELECT last_error FROM public.\(table) WHERE status = 'failed'").contains("baderr"))
        #expect(try await http(port: port, path: "/ready").status == 200)
        #expect(worker.stdout.contains("The database refused a job's outcome"))
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
        try await TestPostgres.sql("DROP TABLE public.\(table) CASCADE")
    }

    @Test("AUTO_MIGRATE=false on a database without the table, as a role that may not create it: exit 1 naming `worker migrate`, no retry loop")
    func missingSchemaWithoutMigration() async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let role = "limited_\(UUID().uuidString.prefix(8).lowercased())"
        // One transaction each, under the lock of the tests that change privileges on the `public`
        // schema (``sharedPrivilegesLock``).
        try await TestPostgres.sql("\(sharedPrivilegesLock); CREATE ROLE \(role) LOGIN; GRANT USAGE ON SCHEMA public TO \(role)")
        defer {
            _ = try? TestPostgres.run("/usr/bin/psql", [TestPostgres.url!, "-X", "-q", "-c", "\(sharedPrivilegesLock); DROP OWNED BY \(role); DROP ROLE \(role)"])
        }
        var components = URLComponents(string: TestPostgres.url!)!
        components.user = role
        for autoMigrate in ["false", "true"] {
            let environment = WorkerPostgresRunTests.environment(table: table, port: try freePort(), [
                "DATABASE_URL": components.string!, "AUTO_MIGRATE": autoMigrate,
            ])
            let worker = try WorkerProcess(environment: environment, directory: folder.url)
            defer { worker.kill9() }
            let status = await worker.waitForExit(timeout: .seconds(20))
            #expect(status == 1, "AUTO_MIGRATE=\(autoMigrate): exit \(String(describing: status)); \(worker.stdout.suffix(600))")
            #expect(worker.stdout.contains("worker migrate"), "\(worker.stdout.suffix(600))")
            #expect(!worker.stdout.contains("Database unreachable"))
            #expect(!worker.stdout.contains("Worker service ready"))
        }
    }

    @Test("a migration the database refuses for what it is (a function of the table's name returning another type): exit 1 with PostgreSQL's error, no retry loop")
    func refusedMigration() async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        try await TestPostgres.sql("CREATE FUNCTION public.\(table)_notify() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
        let environment = WorkerPostgresRunTests.environment(table: table, port: try freePort(), [:])
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        // Before: "Database unreachable at start-up, retrying" with backoff, for ever.
        let status = await worker.waitForExit(timeout: .seconds(30))
        #expect(status == 1, "exit \(String(describing: status)); \(worker.stdout.suffix(800))")
        let output = worker.stdout + worker.stderr
        #expect(output.contains("schema migration was refused") && output.contains("42P13"), "\(output.suffix(800))")
        #expect(!output.contains("Database unreachable"))
        try await TestPostgres.sql("DROP TABLE IF EXISTS public.\(table) CASCADE; DROP FUNCTION public.\(table)_notify()")
    }

    @Test("a refused connection is reported as refused, with host and port, and the worker is not \"ready\"")
    func refusedConnection() async throws {
        let folder = try TemporaryDirectory()
        let port = try freePort()
        let closed = try freePort()
        let environment = WorkerPostgresRunTests.environment(table: "coding_jobs", port: port, [
            "DATABASE_URL": "postgres://nobody@127.0.0.1:\(closed)/x",
        ])
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("retry logged", timeout: .seconds(20)) { worker.stdout.contains("Database unreachable at start-up, retrying") })
        let line = try #require(worker.stdout.split(separator: "\n").first { $0.contains("Database unreachable") }.flatMap { jsonObject(String($0)) })
        #expect((line["error"] as? String)?.contains("connection refused by 127.0.0.1:\(closed)") == true, "\(line)")
        #expect(line["host"] as? String == "127.0.0.1")
        #expect(!worker.stdout.contains("Worker service ready"))
        #expect(try await http(port: port, path: "/ready").status == 503)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("a batch the database refuses in the middle of a JSONL file: earlier batches stay, the error names the line to go on from")
    func refusedBatch() async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let environment = WorkerPostgresRunTests.environment(table: table, port: try freePort())
        #expect(try await WorkerProcess.command(["migrate"], environment: environment, directory: folder.url).status == 0)
        try await TestPostgres.sql("""
            CREATE FUNCTION public.\(table)_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON public.\(table) FOR EACH ROW WHEN (NEW.prompt = 'bad')
                EXECUTE FUNCTION public.\(table)_refuse()
            """)
        // Batches of 2: lines 1-2 and 3-4 are written, the batch of lines 5-6 is refused.
        let lines = ["a", "b", "c", "d", "e", "bad", "g"].map { #"{"prompt":"\#($0)"}"# }.joined(separator: "\n")
        let result = try await WorkerProcess.command(["enqueue", "--jsonl", "-", "--batch-size", "2"], environment: environment, directory: folder.url, stdin: Data(lines.utf8))
        #expect(result.status == 1)
        #expect(result.stderr.contains("the batch from line 5 was not written"), "\(result.stderr)")
        #expect(result.stderr.contains("refused by a trigger"), "\(result.stderr)")
        #expect(result.stderr.contains("4 jobs from earlier lines were enqueued"), "\(result.stderr)")
        #expect(result.stderr.contains("tail -n +5"), "\(result.stderr)")
        #expect(try await WorkerPostgresRunTests.count(table) == 4)
        try await TestPostgres.sql("DROP TABLE public.\(table) CASCADE; DROP FUNCTION public.\(table)_refuse()")
    }
}
