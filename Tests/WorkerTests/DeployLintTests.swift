import Foundation
import Testing

/// The Dockerfile (hadolint), the compose file and the Kubernetes manifests (syntax and shape).
@Suite("deployment files")
struct DeployLintTests {
    @Test("scripts/lint-deploy passes")
    func lint() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let output = try await TestPostgres.offThePool { try TestPostgres.run("/bin/bash", [root.appendingPathComponent("scripts/lint-deploy").path]) }
        #expect(output.contains(", 0 failed"))
        #expect(output.contains("hadolint"))
    }

    @Test("the KEDA trigger's query runs on a migrated table and counts the jobs that need a worker: running, and due pending turns not waiting for their session",
          .enabled(if: TestPostgres.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
    func kedaQuery() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let manifest = try String(contentsOf: root.appendingPathComponent("deploy/kubernetes/keda-scaledobject.yaml"), encoding: .utf8)
        let line = try #require(manifest.split(separator: "\n").first { $0.contains("query: ") })
        let query = String(line.drop { $0 != "\"" }.dropFirst().prefix { $0 != "\"" })
        try #require(query.contains("FROM coding_jobs "), "\(query)")
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let environment = ["DATABASE_URL": TestPostgres.url!, "JOBS_TABLE": table]
        #expect(try await WorkerProcess.command(["migrate"], environment: environment, directory: folder.url).status == 0)
        defer { Task { _ = try? await TestPostgres.sql("DROP TABLE IF EXISTS public.\(table) CASCADE") } }
        let session = UUID().uuidString.lowercased()
        // Two due jobs, one not yet due, and a session's two turns (the second waits for the first).
        try await TestPostgres.sql("""
            INSERT INTO public.\(table) (prompt) VALUES ('due 1'), ('due 2');
            INSERT INTO public.\(table) (prompt, run_at) VALUES ('later', now() + interval '1 hour');
            INSERT INTO public.\(table) (prompt, session_id) VALUES ('turn 1', '\(session)');
            INSERT INTO public.\(table) (prompt, session_id) VALUES ('turn 2', '\(session)');
            """)
        let count = { Int(try await TestPostgres.sql(query.replacingOccurrences(of: "FROM coding_jobs ", with: "FROM public.\(table) "))) ?? -1 }
        #expect(try await count() == 3, "due 1, due 2, turn 1")
        // A worker claims two of them: they still need it (before, the count fell to 1, and the
        // scale-down stopped replicas mid-job).
        try await TestPostgres.sql("""
            UPDATE public.\(table) SET status = 'processing', attempts = 1, locked_by = 'w', started_at = now(),
                lease_expires_at = now() + interval '1 minute' WHERE prompt IN ('due 1', 'turn 1')
            """)
        #expect(try await count() == 3, "due 1 and turn 1 running, due 2 pending")
    }
}
