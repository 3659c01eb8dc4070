import Foundation
import Testing

@Suite("worker CLI")
struct WorkerCLITests {
    @Test("a bad value stops run and config check with exit 1 and one line naming the variable", arguments: [
        ("MAX_CONCURRENT_JOBS", "abc"), ("MAX_CONCURRENT_JOBS", "0"), ("HEALTH_CHECK_PORT", "70000"), ("LOG_LEVEL", "loud"),
        ("POLL_INTERVAL_MS", "soon"), ("DATABASE_URL", "mysql://u:topsecret@h/db"), ("HEALTH_CHECK_HOST", "no-such-host.invalid"),
    ])
    func badConfiguration(variable: String, value: String) async throws {
        let folder = try TemporaryDirectory()
        var environment = ["HEALTH_CHECK_PORT": "\(try freePort())"]
        environment[variable] = value
        for command in [["run"], ["config", "check"]] {
            let result = try await WorkerProcess.command(command, environment: environment, directory: folder.url)
            #expect(result.status == 1)
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "one line, no stack trace: \(result.stderr)")
            #expect(result.stderr.contains(variable))
            #expect(!result.stderr.contains("topsecret") && !result.stdout.contains("topsecret"))
        }
    }

    @Test("a SUPABASE_JWKS_FILE that is no key set stops config check as it stops run")
    func badKeySet() async throws {
        let folder = try TemporaryDirectory()
        let file = folder.url.appendingPathComponent("jwks.json")
        // A key without its id: readable, and refused only when read as a key set.
        try #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","x":"AA","y":"AA"}]}"#.write(to: file, atomically: true, encoding: .utf8)
        let environment = ["HEALTH_CHECK_PORT": "\(try freePort())", "SUPABASE_JWKS_FILE": file.path]
        for command in [["config", "check"], ["run"]] {
            let result = try await WorkerProcess.command(command, environment: environment, directory: folder.url)
            // Before: config check said "Configuration is valid", and run then exited 1.
            #expect(result.status == 1 && result.stderr.contains("SUPABASE_JWKS_FILE"), "\(command): \(result)")
        }
    }

    @Test("AUTO_MIGRATE=false: enqueue on a database without the schema exits 1 naming worker migrate, and creates no table")
    func enqueueWithoutSchema() async throws {
        let folder = try TemporaryDirectory()
        let result = try await WorkerProcess.command(["enqueue", "--prompt", "hi"], environment: ["AUTO_MIGRATE": "false"], directory: folder.url)
        // Before: "no such table: coding_jobs", naming nothing to do.
        #expect(result.status == 1 && result.stderr.contains("worker migrate"), "\(result)")
        #expect(try await WorkerProcess.command(["migrate"], environment: [:], directory: folder.url).status == 0)
        #expect(try await WorkerProcess.command(["enqueue", "--prompt", "hi"], environment: ["AUTO_MIGRATE": "false"], directory: folder.url).status == 0)
    }

    @Test(".env is read and the environment wins over it")
    func dotEnv() async throws {
        let folder = try TemporaryDirectory()
        try "MAX_CONCURRENT_JOBS=7\nWORKER_QUEUES=from-file\n".write(to: folder.url.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
        let result = try await WorkerProcess.command(["config", "check"], environment: ["WORKER_QUEUES": "from-env"], directory: folder.url)
        #expect(result.status == 0)
        #expect(result.stdout.split(separator: "\n").contains { $0.hasPrefix("MAX_CONCURRENT_JOBS ") && $0.hasSuffix(" 7") })
        #expect(result.stdout.contains("from-env") && !result.stdout.contains("from-file"))
    }

    @Test("a port already in use exits 1 naming HEALTH_CHECK_PORT")
    func portInUse() async throws {
        let folder = try TemporaryDirectory()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let port = try freePort()
        address.sin_port = UInt16(port).bigEndian
        // SO_REUSEADDR: the port is held (not listening) by the test process, as every port
        // freePort hands out; a server binds it this way, and it is this listener that the
        // worker must find in its way.
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        #expect(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0)
        #expect(listen(fd, 1) == 0)
        let result = try await WorkerProcess.command(["run"], environment: ["HEALTH_CHECK_PORT": "\(port)"], directory: folder.url)
        #expect(result.status == 1)
        #expect(result.stderr.contains("HEALTH_CHECK_PORT \(port)"))
    }

    @Test("production without JOB_HANDLER refuses to start")
    func productionNeedsHandler() async throws {
        let folder = try TemporaryDirectory()
        let result = try await WorkerProcess.command(["run"], environment: ["APP_ENV": "production", "HEALTH_CHECK_PORT": "\(try freePort())"], directory: folder.url)
        #expect(result.status == 1)
        // What to set: the command (JOB_HANDLER=command alone only led to a second refusal, asking for it).
        #expect(result.stderr.contains("JOB_COMMAND") && result.stderr.contains("JOB_HANDLER=echo"), "\(result.stderr)")
    }

    @Test("JOB_HANDLER=echo beside a JOB_COMMAND (the shipped manifests' demo setting, left when the command was added): production refuses naming both; development warns")
    func echoBesideCommand() async throws {
        let folder = try TemporaryDirectory()
        let environment = ["JOB_HANDLER": "echo", "JOB_COMMAND": "/bin/cat", "JOB_SANDBOX": "none", "HEALTH_CHECK_PORT": "\(try freePort())"]
        for command in [["run"], ["config", "check"]] {
            let refused = try await WorkerProcess.command(command, environment: environment.merging(["APP_ENV": "production"]) { $1 }, directory: folder.url)
            #expect(refused.status == 1, "\(command): \(refused.stdout)")
            #expect(refused.stderr.contains("JOB_HANDLER=echo") && refused.stderr.contains("JOB_COMMAND never runs"), "\(command): \(refused.stderr)")
        }
        let checked = try await WorkerProcess.command(["config", "check"], environment: environment, directory: folder.url)
        #expect(checked.status == 0, "\(checked.stderr)")
        #expect(checked.stdout.contains("WARNING") && checked.stdout.contains("JOB_COMMAND (/bin/cat) is not run"), "\(checked.stdout)")
    }

    @Test("a user's jobs: enqueue --user-id, jobs list --user; migrate --supabase and SUPABASE_RLS refuse the SQLite store, saying what they need")
    func userJobsAndSupabaseOnSQLite() async throws {
        let folder = try TemporaryDirectory()
        let env: [String: String] = [:]
        let user = UUID().uuidString.lowercased()
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "mine", "--user-id", user], environment: env, directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await WorkerProcess.command(["enqueue", "--prompt", "system"], environment: env, directory: folder.url).status == 0)
        let listed = try await WorkerProcess.command(["jobs", "list", "--user", user, "--json"], environment: env, directory: folder.url).stdout
        let jobs = try #require(try JSONSerialization.jsonObject(with: Data(listed.utf8)) as? [[String: Any]], "\(listed)")
        #expect(jobs.map { $0["id"] as? String } == [id] && jobs.first?["user_id"] as? String == user, "\(jobs)")
        let badUser = try await WorkerProcess.command(["enqueue", "--prompt", "x", "--user-id", "alice"], environment: env, directory: folder.url)
        #expect(badUser.status != 0 && badUser.stderr.contains("user id"), "\(badUser.stderr)")

        let migrate = try await WorkerProcess.command(["migrate", "--supabase"], environment: env, directory: folder.url)
        #expect(migrate.status == 1 && migrate.stderr.contains("PostgreSQL"), "\(migrate.stderr)")
        let check = try await WorkerProcess.command(["config", "check"], environment: ["SUPABASE_RLS": "true"], directory: folder.url)
        #expect(check.status == 1 && check.stderr.contains("SUPABASE_RLS") && check.stderr.contains("SQLite"), "\(check.stderr)")
        // The SQL to review before applying it, for the configured table, without a connection.
        let sql = try await WorkerProcess.command(
            ["migrate", "--supabase", "--print-sql"], environment: ["JOBS_TABLE": "turns", "MAX_PENDING_JOBS_PER_USER": "7"], directory: folder.url)
        #expect(sql.status == 0 && sql.stdout.contains(#"ALTER TABLE "public"."turns" ENABLE ROW LEVEL SECURITY;"#), "\(sql.stdout)")
        #expect(sql.stdout.contains(#"CREATE OR REPLACE FUNCTION "public"."enqueue_turn"("#) && sql.stdout.contains("IF pending >= 7 THEN"))
        #expect(try await WorkerProcess.command(["migrate", "--print-sql"], environment: env, directory: folder.url).status != 0)
    }

    @Test("enqueue, show, cancel, retry and list")
    func jobCommands() async throws {
        let folder = try TemporaryDirectory()
        let env: [String: String] = [:]
        let session = UUID().uuidString.lowercased()
        let enqueue = try await WorkerProcess.command(
            ["enqueue", "--prompt", "héllo", "--queue", "q1", "--session-id", session, "--priority", "4", "--max-attempts", "2", "--payload", #"{"k":"v"}"#],
            environment: env, directory: folder.url
        )
        #expect(enqueue.status == 0)
        let id = enqueue.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(UUID(uuidString: id) != nil)
        let shown = try #require(jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: env, directory: folder.url).stdout))
        #expect(shown["prompt"] as? String == "héllo" && shown["queue"] as? String == "q1" && shown["session_id"] as? String == session)
        #expect(shown["priority"] as? Int == 4 && shown["max_attempts"] as? Int == 2 && (shown["payload"] as? [String: String]) == ["k": "v"])
        #expect(Set(shown.keys) == [
            "id", "queue", "session_id", "user_id", "prompt", "payload", "status", "priority", "run_at", "attempts", "max_attempts", "last_error",
            "held_by_session", "blocks_session", "input_tokens", "output_tokens", "cost_usd", "cpu_seconds", "peak_memory_bytes", "run_seconds",
            "result", "created_at", "started_at", "completed_at", "locked_by", "lease_expires_at",
        ])
        #expect(try await WorkerProcess.command(["jobs", "cancel", id], environment: env, directory: folder.url).status == 0)
        #expect(jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: env, directory: folder.url).stdout)?["status"] as? String == "cancelled")
        let again = try await WorkerProcess.command(["jobs", "cancel", id], environment: env, directory: folder.url)
        #expect(again.status == 1 && again.stderr.contains("cannot cancel"))
        #expect(try await WorkerProcess.command(["jobs", "retry", id], environment: env, directory: folder.url).status == 0)
        let list = try await WorkerProcess.command(["jobs", "list", "--status", "pending", "--json"], environment: env, directory: folder.url)
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(listed.map { $0["id"] as? String } == [id])
        let missing = try await WorkerProcess.command(["jobs", "show", UUID().uuidString], environment: env, directory: folder.url)
        #expect(missing.status == 1 && missing.stderr.contains("no job"))
        let badID = try await WorkerProcess.command(["jobs", "show", "nope"], environment: env, directory: folder.url)
        #expect(badID.status != 0)
        let badPayload = try await WorkerProcess.command(["enqueue", "--prompt", "x", "--payload", "[1]"], environment: env, directory: folder.url)
        #expect(badPayload.status != 0 && badPayload.stderr.contains("payload"))
    }

    @Test("a bad JSONL line is reported by number and nothing of its batch is written")
    func badJSONLLine() async throws {
        let folder = try TemporaryDirectory()
        let lines = [#"{"prompt":"a"}"#, #"{"prompt":"b"}"#, #"{"prompt":"c","priority":"high"}"#, #"{"prompt":"d"}"#].joined(separator: "\n")
        let result = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: [:], directory: folder.url, stdin: Data(lines.utf8))
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 3"))
        // The bad line is in the first batch, which is checked before the database is opened.
        #expect(!FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("worker.sqlite").path))
        #expect(try await WorkerProcess.command(["migrate"], environment: [:], directory: folder.url).status == 0)
        let stats = try await WorkerProcess.command(["stats", "--json"], environment: [:], directory: folder.url)
        #expect(jsonObject(stats.stdout)?["pending"] as? Int == 0)
    }

    @Test("a JSONL line that is not UTF-8 is refused by number, not enqueued with U+FFFD in place of its bytes; CRLF lines still read")
    func jsonlNotUTF8() async throws {
        let folder = try TemporaryDirectory()
        var input = Data(#"{"prompt":"fine"}"#.utf8) + Data("\r\n".utf8)
        input += Data(#"{"prompt":"bad "#.utf8) + Data([0xC3, 0x28]) + Data(#" bytes"}"#.utf8) + Data("\n".utf8)
        let result = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: [:], directory: folder.url, stdin: input)
        #expect(result.status == 1)
        #expect(result.stderr.contains("line 2") && result.stderr.contains("UTF-8"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("worker.sqlite").path), "nothing of the batch written")
        let good = try await WorkerProcess.command(
            ["enqueue", "--jsonl", "-"], environment: [:], directory: folder.url, stdin: Data(#"{"prompt":"one"}"#.utf8) + Data("\r\n".utf8))
        #expect(good.status == 0 && good.stdout.contains("Enqueued 1"), "\(good.stdout) \(good.stderr)")
    }

    @Test("migrate is idempotent; healthcheck fails when nothing answers")
    func migrateAndHealthcheck() async throws {
        let folder = try TemporaryDirectory()
        #expect(try await WorkerProcess.command(["migrate"], environment: [:], directory: folder.url).status == 0)
        #expect(try await WorkerProcess.command(["migrate"], environment: [:], directory: folder.url).status == 0)
        #expect(FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("worker.sqlite").path))
        let probe = try await WorkerProcess.command(["healthcheck", "--url", "http://127.0.0.1:\(try freePort())/health"], environment: [:], directory: folder.url)
        #expect(probe.status == 1)
    }
}

/// Issue 13, item 4: what the CLI says, and what it must not do.
@Suite("worker CLI messages")
struct WorkerCLIMessageTests {
    @Test("jobs show, cancel and retry explain that a job id is a UUID, and take it in either case")
    func jobIDs() async throws {
        let folder = try TemporaryDirectory()
        for command in ["show", "cancel", "retry"] {
            let result = try await WorkerProcess.command(["jobs", command, "not-a-uuid"], environment: [:], directory: folder.url)
            #expect(result.status != 0)
            #expect(result.stderr.contains("not-a-uuid is not a job id: a job id is a UUID such as"), "\(result.stderr)")
            #expect(!result.stderr.contains("is invalid for"))
        }
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "p"], environment: [:], directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let upper = id.uppercased()
        #expect(upper != id)
        let shown = try await WorkerProcess.command(["jobs", "show", upper, "--json"], environment: [:], directory: folder.url)
        #expect(shown.status == 0 && jsonObject(shown.stdout)?["id"] as? String == id)
        #expect(try await WorkerProcess.command(["jobs", "cancel", upper], environment: [:], directory: folder.url).status == 0)
        #expect(try await WorkerProcess.command(["jobs", "retry", upper], environment: [:], directory: folder.url).status == 0)
        #expect(try await WorkerProcess.command(["jobs", "show", id.lowercased()], environment: [:], directory: folder.url).status == 0)
    }

    @Test("read-only commands refuse to create the default SQLite file; enqueue creates it")
    func readOnlyNeedsDatabase() async throws {
        let folder = try TemporaryDirectory()
        let file = folder.url.appendingPathComponent("worker.sqlite").path
        for command in [["jobs", "list"], ["jobs", "show", UUID().uuidString], ["stats"], ["stats", "--json"]] {
            let result = try await WorkerProcess.command(command, environment: [:], directory: folder.url)
            #expect(result.status == 1, "\(command)")
            #expect(result.stderr.contains("no database at ./worker.sqlite"), "\(result.stderr)")
            #expect(result.stderr.contains("worker migrate") && result.stderr.contains("DATABASE_URL"))
            #expect(!FileManager.default.fileExists(atPath: file), "\(command) created the file")
        }
        #expect(try await WorkerProcess.command(["enqueue", "--prompt", "p"], environment: [:], directory: folder.url).status == 0)
        #expect(FileManager.default.fileExists(atPath: file))
        #expect(try await WorkerProcess.command(["stats"], environment: [:], directory: folder.url).status == 0)
    }

    @Test("a folder this user cannot write: SQLite commands say so, naming the folder and the write-ahead log SQLite keeps there")
    func unwritableFolder() async throws {
        let folder = try TemporaryDirectory()
        #expect(try await WorkerProcess.command(["enqueue", "--prompt", "p"], environment: [:], directory: folder.url).status == 0)
        let empty = folder.url.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: false)
        // As `nobody`: the folders and the file are root's (755, 644).
        for (command, directory) in [(["jobs", "list"], folder.url), (["stats"], folder.url), (["migrate"], empty)] {
            let result = try await WorkerProcess.command(
                ["--reuid=65534", "--regid=65534", "--clear-groups", WorkerProcess.binary.path] + command, environment: [:], directory: directory,
                executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
            #expect(result.status == 1, "\(command): \(result.stderr)")
            #expect(result.stderr.contains("cannot write in the folder") && result.stderr.contains("worker.sqlite-wal"), "\(command): \(result.stderr)")
        }
    }

    @Test("an operator's commands need none of the job commands' machine checks: as a user other than root, beside a root worker's JOB_USER and sandbox paths, stats and jobs list work; run and config check still refuse, naming the variable")
    func operatorCommandsBesideRootSettings() async throws {
        let folder = try TemporaryDirectory()
        #expect(try await WorkerProcess.command(["enqueue", "--prompt", "p"], environment: [:], directory: folder.url).status == 0)
        // `nobody` may write the folder and the database (SQLite keeps its write-ahead log beside it).
        chmod(folder.url.path, 0o777)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.url.path)) ?? [] {
            chmod(folder.url.appendingPathComponent(name).path, 0o666)
        }
        let rootWorker = [
            "JOB_COMMAND": "cat", "JOB_USER": "daemon", "JOB_SANDBOX": "none",
            "JOB_SANDBOX_RO_PATHS": "/opt/mobvibe-absent-\(UUID().uuidString.prefix(8))", "HEALTH_CHECK_PORT": "\(try freePort())",
        ]
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", WorkerProcess.binary.path]
        let setpriv = URL(fileURLWithPath: "/usr/bin/setpriv")
        for command in [["stats"], ["jobs", "list"]] {
            let result = try await WorkerProcess.command(asNobody + command, environment: rootWorker, directory: folder.url, executable: setpriv)
            #expect(result.status == 0, "\(command): \(result.stderr)")
        }
        let listed = try await WorkerProcess.command(asNobody + ["jobs", "list"], environment: rootWorker, directory: folder.url, executable: setpriv)
        #expect(listed.stdout.contains("pending"), "\(listed.stdout)")
        // Where commands are to run, both are still checked (as nobody: JOB_USER; as root: the paths).
        for command in [["config", "check"], ["run"]] {
            let refused = try await WorkerProcess.command(asNobody + command, environment: rootWorker, directory: folder.url, executable: setpriv)
            #expect(refused.status == 1, "\(command): \(refused.stdout)")
            #expect(refused.stderr.contains("JOB_USER") && refused.stderr.contains("only a worker running as root"), "\(command): \(refused.stderr)")
            var asRoot = rootWorker
            asRoot["JOB_USER"] = nil
            let missing = try await WorkerProcess.command(command, environment: asRoot, directory: folder.url)
            #expect(missing.status == 1, "\(command): \(missing.stdout)")
            #expect(missing.stderr.contains("JOB_SANDBOX_RO_PATHS") && missing.stderr.contains("does not"), "\(command): \(missing.stderr)")
        }
    }

    @Test("commands that only read or change jobs never upgrade the schema: behind this worker's, they exit 1 naming worker migrate, and the version stays")
    func readOnlyCommandsNeverMigrate() async throws {
        let folder = try TemporaryDirectory()
        #expect(try await WorkerProcess.command(["enqueue", "--prompt", "p"], environment: [:], directory: folder.url).status == 0)
        // The schema as an older release left it: its last version not recorded.
        let sqlite = { (sql: String) async throws -> String in
            let script = "import sqlite3, sys; c = sqlite3.connect('worker.sqlite'); r = c.execute(sys.argv[1]).fetchall(); c.commit(); print(r[0][0] if r else '')"
            return try await WorkerProcess.command(["python3", "-c", script, sql], environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
                directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/env")).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let current = try await sqlite("SELECT max(version) FROM worker_schema_migrations")
        _ = try await sqlite("DELETE FROM worker_schema_migrations WHERE version = (SELECT max(version) FROM worker_schema_migrations)")
        for command in [["stats"], ["jobs", "list"], ["jobs", "show", UUID().uuidString]] {
            let result = try await WorkerProcess.command(command, environment: [:], directory: folder.url)
            #expect(result.status == 1, "\(command): \(result.stdout)")
            #expect(result.stderr.contains("worker migrate") && result.stderr.contains("never create or upgrade"), "\(result.stderr)")
        }
        #expect(try await sqlite("SELECT max(version) FROM worker_schema_migrations") != current, "a read-only command upgraded the schema")
        #expect(try await WorkerProcess.command(["migrate"], environment: [:], directory: folder.url).status == 0)
        #expect(try await sqlite("SELECT max(version) FROM worker_schema_migrations") == current)
        #expect(try await WorkerProcess.command(["stats"], environment: [:], directory: folder.url).status == 0)
    }

    @Test("a priority out of range or a bad queue name names the field and what is allowed; nothing is enqueued")
    func invalidJobFields() async throws {
        let folder = try TemporaryDirectory()
        let priority = try await WorkerProcess.command(["enqueue", "--prompt", "x", "--priority", "99999"], environment: [:], directory: folder.url)
        #expect(priority.status != 0)
        #expect(priority.stderr.contains("priority") && priority.stderr.contains("-32768") && priority.stderr.contains("32767"), "\(priority.stderr)")
        let queue = try await WorkerProcess.command(["enqueue", "--prompt", "x", "--queue", "bad queue"], environment: [:], directory: folder.url)
        #expect(queue.status != 0)
        #expect(queue.stderr.contains("queue") && queue.stderr.contains("A-Z a-z 0-9 _ . : -"), "\(queue.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("worker.sqlite").path), "checked before the database")
        for line in [#"{"prompt":"x","priority":99999}"#, #"{"prompt":"x","queue":"bad queue"}"#] {
            let result = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: [:], directory: folder.url, stdin: Data(line.utf8))
            #expect(result.status != 0)
            #expect(result.stderr.contains("line 1") && (result.stderr.contains("32767") || result.stderr.contains("A-Z a-z 0-9 _ . : -")), "\(result.stderr)")
        }
        #expect(try await WorkerProcess.command(["migrate"], environment: [:], directory: folder.url).status == 0)
        let stats = try await WorkerProcess.command(["stats", "--json"], environment: [:], directory: folder.url)
        #expect(jsonObject(stats.stdout)?["pending"] as? Int == 0)
    }

    @Test("jobs list and jobs show escape control characters; --json keeps the prompt exact")
    func controlCharacters() async throws {
        let folder = try TemporaryDirectory()
        let prompt = "before\u{1B}[2J\rafter\u{07}bell\u{9B}31m"
        let id = try await WorkerProcess.command(["enqueue", "--prompt", prompt], environment: [:], directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        for command in [["jobs", "list"], ["jobs", "show", id]] {
            let result = try await WorkerProcess.command(command, environment: [:], directory: folder.url)
            #expect(result.status == 0)
            #expect(!result.stdout.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "\(command): \(result.stdout.debugDescription)")
            #expect(!result.stdout.unicodeScalars.contains { (0x7F...0x9F).contains($0.value) })
            #expect(result.stdout.contains(#"before\e[2J\rafter\abell\u{9B}31m"#), "\(result.stdout.debugDescription)")
        }
        let shown = try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: [:], directory: folder.url)
        #expect(jsonObject(shown.stdout)?["prompt"] as? String == prompt)
        let listed = try await WorkerProcess.command(["jobs", "list", "--json"], environment: [:], directory: folder.url)
        #expect((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])?.first?["prompt"] as? String == prompt)
    }

    @Test("config check in a folder with a Node-style .env prints the unquoted values, secrets redacted")
    func nodeStyleDotEnv() async throws {
        let folder = try TemporaryDirectory()
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("WorkerServiceTests/Fixtures/node-project.env")
        try FileManager.default.copyItem(at: fixture, to: folder.url.appendingPathComponent(".env"))
        let result = try await WorkerProcess.command(["config", "check"], environment: [:], directory: folder.url)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        let values = Dictionary(lines.filter { $0.count >= 2 }.map { ($0[0], $0[1...].joined(separator: " ")) }) { first, _ in first }
        #expect(values["DATABASE_URL"] == "postgres://postgres.abcdefghijklmnop:***@aws-0-eu-central-1.pooler.supabase.com:5432/postgres?sslmode=require")
        #expect(values["MAX_CONCURRENT_JOBS"] == "4")
        #expect(values["WORKER_QUEUES"] == "default,mail:send")
        #expect(values["LOG_LEVEL"] == "debug")
        #expect(values["APP_ENV"] == "development")
        #expect(!result.stdout.contains("Sup3r") && !result.stderr.contains("Sup3r"))
        #expect(!result.stdout.contains("\""))
    }
}

@Suite("worker bench")
struct WorkerBenchTests {
    @Test("throughput and latency print one JSON object with the documented keys, and leave the jobs table alone")
    func bench() async throws {
        let folder = try TemporaryDirectory()
        let throughput = try await WorkerProcess.command(["bench", "throughput", "--jobs", "300", "--concurrency", "10", "--json"], environment: [:], directory: folder.url)
        #expect(throughput.status == 0, "\(throughput.stderr)")
        let result = try #require(jsonObject(throughput.stdout))
        #expect(Set(result.keys) == [
            "mode", "jobs", "concurrency", "seconds", "jobsPerSecond", "cpuSecondsPer1000Jobs", "peakRssBytes", "sessions", "meanInFlight",
        ])
        #expect(result["jobs"] as? Int == 300 && result["mode"] as? String == "throughput")
        #expect((result["jobsPerSecond"] as? Double ?? 0) > 0)
        // Spread over 3 sessions, at most 3 jobs run at once, however many slots there are.
        let sessions = try await WorkerProcess.command(
            ["bench", "throughput", "--jobs", "60", "--concurrency", "10", "--sessions", "3", "--json"], environment: [:], directory: folder.url)
        #expect(sessions.status == 0, "\(sessions.stderr)")
        let spread = try #require(jsonObject(sessions.stdout))
        #expect(spread["sessions"] as? Int == 3 && spread["jobs"] as? Int == 60)
        #expect((spread["meanInFlight"] as? Double ?? 99) <= 3)
        let latency = try await WorkerProcess.command(["bench", "latency", "--jobs", "5", "--gap-ms", "5", "--json"], environment: [:], directory: folder.url)
        #expect(latency.status == 0, "\(latency.stderr)")
        let figures = try #require(jsonObject(latency.stdout))
        #expect(Set(figures.keys) == ["mode", "jobs", "p50Ms", "p95Ms", "p99Ms", "maxMs", "afterCommitP50Ms", "afterCommitP95Ms", "afterCommitP99Ms"])
        #expect((figures["p50Ms"] as? Double ?? -1) >= 0 && (figures["maxMs"] as? Double ?? -1) >= (figures["p50Ms"] as? Double ?? 0))
        // The pickup after the commit is part of the time from the enqueue call.
        #expect((figures["afterCommitP50Ms"] as? Double ?? -1) >= 0)
        #expect((figures["afterCommitP99Ms"] as? Double ?? .infinity) <= (figures["maxMs"] as? Double ?? 0))
        // The benchmark used a scratch table: the jobs table was never made (and `stats` does not make it).
        let stats = try await WorkerProcess.command(["stats", "--json"], environment: [:], directory: folder.url)
        #expect(stats.status == 1 && stats.stderr.contains("worker migrate"), "\(stats.stdout)\(stats.stderr)")
    }

    @Test("jobs list --session shows the turns in order and why each waits; stats count the sessions")
    func sessionListing() async throws {
        let folder = try TemporaryDirectory()
        let session = UUID().uuidString.lowercased()
        var ids: [String] = []
        for turn in 1...3 {
            let enqueue = try await WorkerProcess.command(["enqueue", "--prompt", "turn \(turn)", "--session-id", session], environment: [:], directory: folder.url)
            #expect(enqueue.status == 0, "\(enqueue.stderr)")
            ids.append(enqueue.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        _ = try await WorkerProcess.command(["enqueue", "--prompt", "other"], environment: [:], directory: folder.url)
        let list = try await WorkerProcess.command(["jobs", "list", "--session", session.uppercased()], environment: [:], directory: folder.url)
        #expect(list.status == 0, "\(list.stderr)")
        let lines = list.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "a header and the session's three turns, not the other job: \(list.stdout)")
        #expect(lines.dropFirst().map { $0.split(separator: " ").first.map(String.init) } == ["1", "2", "3"])
        #expect(lines[1].contains(ids[0]) && lines[1].contains("for a free worker"))
        #expect(lines[2].contains(ids[1]) && lines[2].contains("for turn \(ids[0].prefix(8)) (pending)"))
        #expect(lines[3].contains(ids[2]) && lines[3].contains("for turn \(ids[0].prefix(8))"))
        let stats = try #require(jsonObject(try await WorkerProcess.command(["stats", "--json"], environment: [:], directory: folder.url).stdout))
        let sessions = try #require(stats["sessions"] as? [String: Any])
        #expect(sessions["waiting"] as? Int == 1 && sessions["waitingTurns"] as? Int == 2 && sessions["running"] as? Int == 0)
        let text = try await WorkerProcess.command(["stats"], environment: [:], directory: folder.url)
        #expect(text.stdout.contains("sessions waiting   1 (2 turns)"), "\(text.stdout)")
        let bad = try await WorkerProcess.command(["jobs", "list", "--session", "nope"], environment: [:], directory: folder.url)
        #expect(bad.status != 0 && bad.stderr.contains("not a session id"))
        // A user's id is not called a session's.
        let badUser = try await WorkerProcess.command(["jobs", "list", "--user", "nope"], environment: [:], directory: folder.url)
        #expect(badUser.status != 0 && badUser.stderr.contains("--user: nope is not a user id"), "\(badUser.stderr)")
    }
}
