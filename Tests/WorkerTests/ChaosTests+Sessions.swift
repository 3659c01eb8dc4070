import Foundation
import Testing

/// Sessions under fault injection: real workers on a PostgreSQL of their own, each turn's command
/// recording when it started and ended, workers killed and the database restarted meanwhile. A
/// case of the chaos suite, so that it runs alone among its cases (two clusters and eight
/// workers at once starved the rest of the test process on two cores).
extension ChaosTests {
    static let sessionScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chaos-session-job.sh").path

    /// One run of a turn's command, from the log the script writes.
    struct TurnRun {
        let job: String
        let session: String
        let turn: Int
        let attempt: Int
        let worker: String
        let start: UInt64
        var end: UInt64?
    }

    @Test("4 workers, 200 sessions x 20 turns, kill -9 and a PostgreSQL restart: no two turns of a session overlap, turns start in order, nothing lost")
    func sessionsUnderChaos() async throws {
        let chaos = try await ChaosRun.make(name: "sessions", lease: .seconds(3))
        defer { chaos.tearDown() }
        // With row-level security on, as a Supabase project runs it: the database has Supabase's
        // roles and auth.uid(), and the four workers apply the policies at start-up, together
        // (SUPABASE_RLS=true). The worker, the table's owner, is not restricted by them.
        _ = try await chaos.postgres.sql("""
            CREATE ROLE anon NOLOGIN; CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS;
            CREATE SCHEMA auth;
            CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
                SELECT nullif(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', '')::uuid $$;
            CREATE PUBLICATION supabase_realtime;
            """)
        let extra = ["JOB_COMMAND": Self.sessionScript, "SUPABASE_RLS": "true"]
        var workers = try (0..<4).map { _ in try chaos.startWorker(concurrency: 16, extra: extra) }
        try await chaos.waitReady(workers)
        #expect(try await chaos.postgres.sql("SELECT relrowsecurity FROM pg_class WHERE relname = 'coding_jobs'")
            .trimmingCharacters(in: .whitespacesAndNewlines) == "t", "the workers applied row-level security at start-up")

        let sessions = (0..<200).map { _ in UUID().uuidString.lowercased() }
        let turns = 20
        // Round by round, so each session's turns are enqueued in turn order.
        var lines: [String] = []
        for turn in 0..<turns {
            for session in sessions {
                lines.append(#"{"prompt":"ok \#(chaos.random(in: 0...30)) \#(turn)","sessionId":"\#(session)","maxAttempts":10}"#)
            }
        }
        // The turns go in while the workers run (that is how a batch's locks once crossed the
        // workers' outcome writes). Each insert runs its session's admit (a lock and two
        // lookups) and waits for outcome writes on the session's active turn: on a loaded CI
        // machine a batch of 200 took longer than the chaos workers' statement bound (2.5 s,
        // from their 3 s lease). The enqueue is the backend's, not a chaos worker's: it runs
        // with the default lease, hence the default bound.
        try await chaos.enqueue(lines: lines, batchSize: 200, extra: ["LEASE_DURATION_MS": "30000"])

        // Two kills, the restart, two more kills, each at a point of the turns' progress.
        var restarted = false
        try await chaos.inject(at: [0.1, 0.25, 0.4, 0.55, 0.7], of: sessions.count * turns) { index in
            if index == 2 {
                try await chaos.postgres.stop(mode: "immediate")
                try await Task.sleep(for: .seconds(2))
                try await chaos.postgres.start()
                restarted = true
                return
            }
            let victim = chaos.random(in: 0...(workers.count - 1))
            chaos.kill(workers[victim])
            workers[victim] = try chaos.startWorker(concurrency: 16, extra: extra)
        }
        #expect(restarted && chaos.killed.count == 4, "every planned fault happened")
        try await chaos.finish(workers: workers, expectFailed: 0, timeout: .seconds(240), outages: restarted ? 1 : 0)

        let runs = try Self.turnRuns(log: chaos.log)
        var bySession: [String: [TurnRun]] = [:]
        for run in runs { bySession[run.session, default: []].append(run) }
        var overlaps: [String] = [], outOfOrder: [String] = [], unfinished = 0
        for (session, sessionRuns) in bySession {
            let sorted = sessionRuns.sorted { $0.start < $1.start }
            for (earlier, later) in zip(sorted, sorted.dropFirst()) {
                // A run of turn k may be repeated (its worker was killed), but turn k + 1 never
                // starts before turn k's last run, and no run starts before the previous one ended.
                if later.turn < earlier.turn { outOfOrder.append("\(session): turn \(later.turn) after turn \(earlier.turn)") }
                if let end = earlier.end, later.start < end {
                    overlaps.append("\(session): turn \(later.turn) (\(later.worker)) started \((end - later.start) / 1_000) ms before turn \(earlier.turn) (\(earlier.worker)) ended")
                }
                if earlier.end == nil { unfinished += 1 }
            }
            #expect(Set(sessionRuns.map(\.turn)) == Set(0..<turns), "\(session): every turn ran")
        }
        print("chaos sessions: \(runs.count) runs of \(sessions.count * turns) turns, \(chaos.killed.count) kills, restart \(restarted), overlaps \(overlaps.count), out of order \(outOfOrder.count), runs without an end \(unfinished)")
        #expect(bySession.count == sessions.count)
        #expect(overlaps.isEmpty, "\(overlaps.prefix(5))")
        #expect(outOfOrder.isEmpty, "\(outOfOrder.prefix(5))")
        #expect(unfinished == 0, "a run without an end cannot be checked for overlap")

        // Every turn's events, through the kills and the restart: numbered 1 to n with no gap or
        // duplicate across its attempts, and ending with its `completed` event.
        let gaps = try await chaos.postgres.sql(
            "SELECT count(*) FROM (SELECT job_id FROM coding_job_events GROUP BY job_id HAVING count(*) <> max(seq) OR min(seq) <> 1) AS g")
        if gaps != "0" {
            // What the gaps look like, and what the workers logged about those jobs, for the log
            // of a failed run.
            let listing = try await chaos.postgres.sql("""
                SELECT e.job_id, string_agg(e.seq || ':' || e.attempt || ':' || coalesce(e.data->>'status', e.kind), ' ' ORDER BY e.seq)
                FROM coding_job_events AS e WHERE e.job_id IN (
                    SELECT job_id FROM coding_job_events GROUP BY job_id HAVING count(*) <> max(seq) OR min(seq) <> 1 LIMIT 5)
                GROUP BY e.job_id
                """)
            print(listing)
            let ids = listing.split(separator: "\n").compactMap { $0.split(separator: "|").first.map(String.init) }
            for worker in chaos.workers {
                for line in worker.process.stdout.split(separator: "\n") where ids.contains(where: { line.contains($0) }) {
                    print("\(worker.id): \(line)")
                }
            }
        }
        #expect(gaps == "0", "jobs whose events have gaps: \(gaps)")
        let unended = try await chaos.postgres.sql("""
            SELECT count(*) FROM coding_jobs AS j WHERE NOT EXISTS (
                SELECT 1 FROM coding_job_events AS e WHERE e.job_id = j.id AND e.kind = 'status' AND e.data->>'status' = 'completed'
                    AND e.seq = (SELECT max(seq) FROM coding_job_events WHERE job_id = j.id))
            """)
        #expect(unended == "0", "completed jobs whose last event is not their completed event: \(unended)")
        let messages = try await chaos.postgres.sql("SELECT count(*) FROM coding_job_events WHERE kind = 'message'")
        #expect(Int(messages) ?? 0 >= sessions.count * turns, "each turn's JSON line is a message event")
    }

    static func turnRuns(log: String) throws -> [TurnRun] {
        // Runs by job, attempt and worker (a job given back at shutdown runs again under the
        // same attempt); an end closes the latest open run of its key.
        var runs: [String: [TurnRun]] = [:]
        for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count == 7, let turn = Int(parts[3]), let attempt = Int(parts[4]), let time = UInt64(parts[6]) else { continue }
            let key = "\(parts[1]) \(attempt) \(parts[5])"
            if parts[0] == "start" {
                runs[key, default: []].append(TurnRun(job: parts[1], session: parts[2], turn: turn, attempt: attempt, worker: parts[5], start: time))
            } else if let index = runs[key]?.lastIndex(where: { $0.end == nil }) {
                runs[key]?[index].end = time
            }
        }
        return runs.values.flatMap { $0 }
    }
}
