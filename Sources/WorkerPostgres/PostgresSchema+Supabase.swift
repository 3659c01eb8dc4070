import WorkerCore

/// Row-level security and a SQL API for a Supabase app's users (`worker migrate --supabase`,
/// `SUPABASE_RLS=true`; docs/WORKER_SERVICE.md, "Supabase").
///
/// A Supabase table is reachable by every client through its REST API. So: a signed-in user
/// (`authenticated`) may read their own jobs and their events and nothing else; `anon` nothing;
/// nobody but the worker writes the tables directly. The app enqueues, cancels and retries
/// through three functions (supabase-js `rpc`) that take the user from `auth.uid()` and set
/// every other field themselves. The worker connects as the tables' owner or `service_role`,
/// which row-level security does not restrict.
extension PostgresSchema {
    /// How big a prompt and a payload `enqueue_…` accepts, in bytes (a user's input, bounded so
    /// that one user cannot fill the table with one call).
    static let supabaseMaximumPromptBytes = 262_144
    static let supabaseMaximumPayloadBytes = 65_536

    /// What the migration needs of the database, as names of what is missing (empty: all there).
    static let supabasePrerequisites = """
        SELECT array_remove(ARRAY[
            CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN 'the role anon' END,
            CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN 'the role authenticated' END,
            CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN 'the role service_role' END,
            CASE WHEN to_regprocedure('auth.uid()') IS NULL THEN 'the function auth.uid()' END
        ], NULL)::text[]
        """

    /// The functions' names, after the table: `coding_jobs` gives `enqueue_coding_job`,
    /// `cancel_coding_job`, `retry_coding_job` (the table's name without a final "s"), and the
    /// type they return, `coding_job_row`.
    var supabaseFunctionNames: (enqueue: String, cancel: String, retry: String, row: String) {
        let singular = tableName.hasSuffix("s") ? String(tableName.dropLast()) : tableName
        return ("enqueue_\(singular)", "cancel_\(singular)", "retry_\(singular)", "\(singular)_row")
    }

    /// What the functions return: a job as its user may see it, without the worker's own fields
    /// (lease, worker id, session bookkeeping).
    private static let publicColumns: [(name: String, type: String)] = [
        ("id", "uuid"), ("session_id", "uuid"), ("user_id", "uuid"), ("queue", "text"), ("prompt", "text"), ("payload", "jsonb"),
        ("status", "text"), ("priority", "integer"), ("run_at", "timestamptz"), ("attempts", "integer"), ("max_attempts", "integer"),
        ("last_error", "text"), ("result", "jsonb"), ("created_at", "timestamptz"), ("started_at", "timestamptz"),
        ("completed_at", "timestamptz"), ("input_tokens", "bigint"), ("output_tokens", "bigint"), ("cost_usd", "double precision"),
    ]

    /// The statements, each idempotent, run in one transaction under the table's migration lock.
    /// - Parameters:
    ///   - maximumPendingJobsPerUser: `MAX_PENDING_JOBS_PER_USER`, written into `enqueue_…` (run
    ///     the migration again to change it), as are
    ///   - userQueues: the queues a user may name (`SUPABASE_USER_QUEUES`).
    func supabaseStatements(maximumPendingJobsPerUser: Int, userQueues: [String] = [NewJob.defaultQueue]) -> [String] {
        supabaseSetup(maximumPendingJobsPerUser: maximumPendingJobsPerUser, userQueues: userQueues).statements
    }

    /// The statements (see ``supabaseStatements(maximumPendingJobsPerUser:userQueues:)``) and the
    /// mark their last one leaves on `enqueue_…` (``supabaseMarkQuery`` reads it back).
    func supabaseSetup(maximumPendingJobsPerUser: Int, userQueues: [String]) -> (statements: [String], mark: String) {
        let names = supabaseFunctionNames
        let function = { (name: String) in "\"\(schemaName)\".\"\(name)\"" }
        // One row, not a set: supabase-js's rpc then answers the job object itself. A type of
        // its own, made again each time with the functions, so that it always has today's fields.
        let returns = function(names.row)
        let selected = Self.publicColumns.map { "j.\($0.name)::\($0.type)" }.joined(separator: ", ")
        let literal = { (text: String) in "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        // Every function: the caller's user or an error; run as the table's owner with an empty
        // search path (a caller's objects never shadow the ones named here).
        let header = """
            LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $function$
            #variable_conflict use_column
            """
        let signedIn = { (name: String) in
            """
            IF caller IS NULL THEN
                RAISE EXCEPTION '\(name): not signed in (auth.uid() is null)' USING ERRCODE = '42501';
            END IF;
            """
        }
        // At most MAX_PENDING_JOBS_PER_USER pending jobs a user, counted under a lock per user
        // (so that concurrent calls of one user cannot all pass the count).
        let pendingCap = { (name: String) in
            """
            PERFORM pg_advisory_xact_lock(hashtext(\(literal(table)) || ':pending:' || caller::text));
                SELECT count(*) INTO pending FROM \(table) AS j WHERE j.user_id = caller AND j.status = 'pending';
                IF pending >= \(maximumPendingJobsPerUser) THEN
                    RAISE EXCEPTION '\(name): you have % pending jobs, the most allowed (MAX_PENDING_JOBS_PER_USER)', pending
                        USING ERRCODE = '53400', HINT = 'Wait until one of them starts, or cancel one.';
                END IF;
            """
        }
        let typeColumns = Self.publicColumns.map { "\($0.name) \($0.type)" }.joined(separator: ", ")
        var statements: [String] = [
            // Read: a user's own jobs, and the events of those; anon nothing; writes by nobody
            // but the worker (no INSERT, UPDATE or DELETE policy, and no such privilege). TRUNCATE
            // ignores row-level security: revoked too.
            "ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY",
            "ALTER TABLE \(eventsTable) ENABLE ROW LEVEL SECURITY",
            "DROP POLICY IF EXISTS \"\(tableName)_own_jobs\" ON \(table)",
            """
            CREATE POLICY "\(tableName)_own_jobs" ON \(table) FOR SELECT TO authenticated
                USING (user_id = (SELECT auth.uid()))
            """,
            "DROP POLICY IF EXISTS \"\(eventsTableName)_own_events\" ON \(eventsTable)",
            """
            CREATE POLICY "\(eventsTableName)_own_events" ON \(eventsTable) FOR SELECT TO authenticated
                USING (user_id = (SELECT auth.uid()))
            """,
            // Whatever other policies the tables have (a project's own, a dashboard template's
            // "Enable read access for all users"): PostgreSQL ORs permissive policies, so before,
            // one of them let every user read every job. A restrictive one is ANDed with them.
            "DROP POLICY IF EXISTS \"\(tableName)_only_own_jobs\" ON \(table)",
            """
            CREATE POLICY "\(tableName)_only_own_jobs" ON \(table) AS RESTRICTIVE FOR ALL TO anon, authenticated
                USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()))
            """,
            "DROP POLICY IF EXISTS \"\(eventsTableName)_only_own_events\" ON \(eventsTable)",
            """
            CREATE POLICY "\(eventsTableName)_only_own_events" ON \(eventsTable) AS RESTRICTIVE FOR ALL TO anon, authenticated
                USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()))
            """,
        ] + supabaseEventUserStatements + [
            "REVOKE ALL ON \(table), \(eventsTable) FROM anon, PUBLIC",
            "REVOKE ALL ON \(table), \(eventsTable) FROM authenticated",
            "GRANT SELECT ON \(table), \(eventsTable) TO authenticated",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON \(table), \(eventsTable) TO service_role",
            // The migrations table: a row naming a newer version stops every worker's start. No
            // client may read or write it.
            "ALTER TABLE \(migrationsTable) ENABLE ROW LEVEL SECURITY",
            "REVOKE ALL ON \(migrationsTable) FROM anon, authenticated, PUBLIC",
            // The table is shared by every jobs table of the schema: a worker of another table,
            // logged in as a role granted SELECT on it (least privilege, no BYPASSRLS), must
            // still read its version; with no policy it read none, took its table for
            // unmigrated and failed to start. Clients still have no right to the table at all.
            "DROP POLICY IF EXISTS \"worker_schema_migrations_read\" ON \(migrationsTable)",
            "CREATE POLICY \"worker_schema_migrations_read\" ON \(migrationsTable) FOR SELECT USING (true)",
            // A session's jobs, found whatever their state: `enqueue_…` checks whose a session is.
            // Partial, so jobs without a session (and their row updates) never touch it.
            """
            CREATE INDEX IF NOT EXISTS "\(tableName)_session_owner_idx" ON \(table) (session_id, user_id)
                WHERE session_id IS NOT NULL
            """,
            // The functions' answer: a job without the worker's own fields. Made when missing, and
            // made again (after the functions that return it) only when its fields changed. Never
            // dropped with CASCADE: that also dropped, silently and on every start, whatever of the
            // app's used the type (a view, a function); such an object now stops the migration
            // with PostgreSQL's error naming it.
            """
            DO $$ BEGIN
                IF to_regtype(\(literal(returns))) IS NULL THEN
                    CREATE TYPE \(returns) AS (\(typeColumns));
                ELSIF (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                       FROM pg_attribute AS a JOIN pg_type AS t ON t.typrelid = a.attrelid
                       WHERE t.oid = to_regtype(\(literal(returns))) AND a.attnum > 0 AND NOT a.attisdropped)
                    IS DISTINCT FROM (SELECT string_agg(c.name || ' ' || format_type(c.type::regtype, NULL), ', ' ORDER BY c.n)
                       FROM unnest(ARRAY[\(Self.publicColumns.map { literal($0.name) }.joined(separator: ", "))],
                                   ARRAY[\(Self.publicColumns.map { literal($0.type) }.joined(separator: ", "))]) WITH ORDINALITY AS c(name, type, n))
                THEN
                    DROP FUNCTION IF EXISTS \(function(names.enqueue))(text, uuid, jsonb, text, integer), \(function(names.cancel))(uuid), \(function(names.retry))(uuid);
                    DROP TYPE \(returns);
                    CREATE TYPE \(returns) AS (\(typeColumns));
                END IF;
            END $$
            """,
        ]
        statements.append(
            // Enqueue: the user is the caller; status, attempts, lease and result are the
            // table's defaults, never the caller's; prompt and payload bounded; at most
            // MAX_PENDING_JOBS_PER_USER pending jobs a user (counted under a lock per user, so
            // concurrent calls of one user cannot all pass the count).
            """
            CREATE OR REPLACE FUNCTION \(function(names.enqueue))(
                prompt text, session_id uuid DEFAULT NULL, payload jsonb DEFAULT '{}'::jsonb,
                queue text DEFAULT \(literal(userQueues.first ?? NewJob.defaultQueue)), priority integer DEFAULT 0
            ) RETURNS \(returns)
            \(header)
            DECLARE
                caller uuid := auth.uid();
                wanted_session uuid := session_id;
                pending bigint;
                new_id uuid;
                answer \(returns);
            BEGIN
                \(signedIn(names.enqueue))
                IF prompt IS NULL OR prompt = '' THEN
                    RAISE EXCEPTION '\(names.enqueue): prompt is empty' USING ERRCODE = '22023';
                END IF;
                IF octet_length(prompt) > \(Self.supabaseMaximumPromptBytes) THEN
                    RAISE EXCEPTION '\(names.enqueue): prompt is % bytes, more than \(Self.supabaseMaximumPromptBytes)', octet_length(prompt) USING ERRCODE = '22001';
                END IF;
                payload := coalesce(payload, '{}'::jsonb);
                IF jsonb_typeof(payload) <> 'object' THEN
                    RAISE EXCEPTION '\(names.enqueue): payload must be a JSON object, not %', jsonb_typeof(payload) USING ERRCODE = '22023';
                END IF;
                IF octet_length(payload::text) > \(Self.supabaseMaximumPayloadBytes) THEN
                    RAISE EXCEPTION '\(names.enqueue): payload is % bytes, more than \(Self.supabaseMaximumPayloadBytes)', octet_length(payload::text) USING ERRCODE = '22001';
                END IF;
                -- A user's job goes where the operator lets users' jobs go (a queue served with more
                -- than the default sandbox is for backends), and never ahead of other users' and
                -- the backend's jobs: a priority above the default is for backends too.
                queue := coalesce(queue, \(literal(userQueues.first ?? NewJob.defaultQueue)));
                IF queue <> ALL (ARRAY[\(userQueues.map(literal).joined(separator: ", "))]::text[]) THEN
                    RAISE EXCEPTION '\(names.enqueue): queue must be one of \(userQueues.joined(separator: ", ").replacingOccurrences(of: "'", with: "''")) (SUPABASE_USER_QUEUES)'
                        USING ERRCODE = '22023';
                END IF;
                priority := coalesce(priority, 0);
                IF priority NOT BETWEEN \(NewJob.priorityRange.lowerBound) AND 0 THEN
                    RAISE EXCEPTION '\(names.enqueue): priority must be from \(NewJob.priorityRange.lowerBound) to 0 (a higher one is for backends)' USING ERRCODE = '22023';
                END IF;
                \(pendingCap(names.enqueue))
                -- A session is its first job's user's: another user's turn would run in that
                -- user's session workspace (JOB_WORKSPACE=session), after their turns, and could
                -- hold their session. Checked under a lock per session, so that two users cannot
                -- both start one new session.
                IF wanted_session IS NOT NULL THEN
                    PERFORM pg_advisory_xact_lock(hashtext(\(literal(table)) || ':session:' || wanted_session::text));
                    IF EXISTS (SELECT 1 FROM \(table) AS j WHERE j.session_id = wanted_session AND j.user_id IS DISTINCT FROM caller) THEN
                        RAISE EXCEPTION '\(names.enqueue): session % is not yours', wanted_session
                            USING ERRCODE = '42501', HINT = 'Start a new session with a new id (a random UUID).';
                    END IF;
                END IF;
                INSERT INTO \(table) AS j (prompt, session_id, payload, queue, priority, user_id)
                    VALUES (prompt, session_id, payload, queue, priority, caller)
                    RETURNING j.id INTO new_id;
                SELECT \(selected) INTO answer FROM \(table) AS j WHERE j.id = new_id;
                RETURN answer;
            END
            $function$
            """)
        // Cancel and retry: one change to one of the caller's own jobs, or "not found" alike for
        // another user's job and for none, so that ids cannot be probed.
        func ownJobFunction(
            _ name: String, set assignments: String, where condition: String, missing: String, notify payload: String, before check: String = ""
        ) -> String {
            """
            CREATE OR REPLACE FUNCTION \(function(name))(job_id uuid) RETURNS \(returns)
            \(header)
            DECLARE
                caller uuid := auth.uid();
                pending bigint;
                changed uuid;
                answer \(returns);
            BEGIN
                \(signedIn(name))
                \(check)
                UPDATE \(table) AS j SET \(assignments)
                    WHERE j.id = job_id AND j.user_id = caller AND \(condition)
                    RETURNING j.id INTO changed;
                IF changed IS NULL THEN
                    RAISE EXCEPTION '\(name): no \(missing) job % of yours', job_id USING ERRCODE = 'P0002';
                END IF;
                PERFORM pg_notify(\(literal(channel)), \(payload));
                SELECT \(selected) INTO answer FROM \(table) AS j WHERE j.id = changed;
                RETURN answer;
            END
            $function$
            """
        }
        // Cancel: the caller's own pending or running job (a running one is stopped by its
        // worker, told by the same notification `worker jobs cancel` sends).
        statements.append(ownJobFunction(
            names.cancel, set: Self.cancelAssignments, where: Self.cancellable, missing: "pending or running",
            notify: "'cancel:' || changed::text"))
        // Retry: the caller's own failed job, pending again with one more attempt allowed, within
        // the same pending cap as an enqueue (else failed jobs, retried together, went past it),
        // and only one an enqueue of theirs could have made: a job a backend put in another queue
        // or at a higher priority for them was theirs to retry over and over, in that queue, ahead
        // of everyone (the backend retries it).
        let userQueueList = "ARRAY[\(userQueues.map(literal).joined(separator: ", "))]::text[]"
        statements.append(ownJobFunction(
            names.retry, set: Self.retryAssignments, where: "j.status = 'failed' AND j.queue = ANY(\(userQueueList)) AND j.priority <= 0",
            missing: "failed", notify: "'jobs'", before: pendingCap(names.retry)))
        for (name, signature) in [(names.enqueue, "(text, uuid, jsonb, text, integer)"), (names.cancel, "(uuid)"), (names.retry, "(uuid)")] {
            statements.append("REVOKE ALL ON FUNCTION \(function(name))\(signature) FROM PUBLIC, anon")
            statements.append("GRANT EXECUTE ON FUNCTION \(function(name))\(signature) TO authenticated, service_role")
        }
        statements.append(
            // Realtime: the app subscribes to its job and its events (row-level security applies
            // there too), when the project has Supabase's publication.
            """
            DO $$ DECLARE relation regclass; BEGIN
                IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime' AND NOT puballtables) THEN
                    FOREACH relation IN ARRAY ARRAY[\(literal(table))::regclass, \(literal(eventsTable))::regclass] LOOP
                        IF NOT EXISTS (
                            SELECT 1 FROM pg_publication_rel AS r JOIN pg_publication AS p ON p.oid = r.prpubid
                            WHERE p.pubname = 'supabase_realtime' AND r.prrelid = relation
                        ) THEN
                            EXECUTE format('ALTER PUBLICATION supabase_realtime ADD TABLE %s', relation);
                        END IF;
                    END LOOP;
                END IF;
            END $$
            """)
        // Last, the mark of what was applied: a worker that finds it starts without running any
        // of the above again (each start with SUPABASE_RLS=true would otherwise take the tables'
        // exclusive locks, waiting behind every open transaction and holding up every claim).
        let mark = Self.supabaseMark(of: statements)
        statements.append("COMMENT ON FUNCTION \(function(names.enqueue))(text, uuid, jsonb, text, integer) IS \(literal(mark))")
        return (statements, mark)
    }

    /// The comment on `enqueue_…` that says which statements made it: a fingerprint (64-bit
    /// FNV-1a, hex) of their text, so any change (a new version's, another
    /// `MAX_PENDING_JOBS_PER_USER`) applies them again.
    static func supabaseMark(of statements: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in statements.joined(separator: "\n;\n").utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return "mobvibe-worker supabase \(String(hash, radix: 16))"
    }

    /// The query answering the mark on `enqueue_…` (NULL when the function is missing).
    ///
    /// Only while what the statements set still holds: row-level security on the three tables
    /// and the worker's policies in place. Before, the mark alone counted, so row-level security
    /// switched off afterwards (the table editor's switch) was never switched on again, nor
    /// warned about, and every user read every job.
    var supabaseMarkQuery: String {
        let names = supabaseFunctionNames
        let quoted = { (text: String) in "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
        let signature = quoted("\"\(schemaName)\".\"\(names.enqueue)\"(text, uuid, jsonb, text, integer)")
        let policies = ["\(tableName)_own_jobs", "\(tableName)_only_own_jobs", "\(eventsTableName)_own_events", "\(eventsTableName)_only_own_events"]
        return """
            SELECT CASE WHEN
                (SELECT count(*) FROM pg_class WHERE relrowsecurity
                    AND oid IN (to_regclass(\(quoted(table))), to_regclass(\(quoted(eventsTable))), to_regclass(\(quoted(migrationsTable))))) = 3
                AND (SELECT count(*) FROM pg_policy
                    WHERE polrelid IN (to_regclass(\(quoted(table))), to_regclass(\(quoted(eventsTable))))
                      AND polname IN (\(policies.map(quoted).joined(separator: ", ")))) = \(policies.count)
            THEN obj_description(to_regprocedure(\(signature)), 'pg_proc') END
            """
    }
}
