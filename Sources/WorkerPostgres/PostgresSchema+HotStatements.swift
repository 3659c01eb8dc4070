import WorkerCore

/// The statements on the worker's hot path: enqueue, claim, events and the outcome writes, each
/// one statement, built once per store (``PostgresSchema/init(schema:table:sessionOnFailure:)``)
/// and prepared by name on each connection (``PostgresJobStore/rows(of:_:inTransaction:)``).
extension PostgresSchema {
    /// Inserts jobs, one element of each array per job: `$1` ids, `$2` queues, `$3` session ids
    /// ('' for none), `$4` prompts, `$5` payloads (JSON text), `$6` priorities, `$7` run-at times
    /// in Unix seconds (negative: now, by the database's clock), `$8` max attempts, `$9` user ids
    /// ('' for none).
    static func makeEnqueueStatement(table: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_enqueue",
            sql: """
                -- Before any row goes in, the active turns of the batch's sessions are locked in id
                -- order, the order in which outcome writes and renewals lock rows. Each insert's
                -- session trigger locks its session's active turn until the statement commits;
                -- taken one by one in session order, those locks crossed a worker's outcome batch
                -- (id order) and both waited (a deadlock, or a convoy past the statement bound).
                WITH active AS (
                    SELECT j.id FROM \(table) AS j
                    WHERE j.session_id = ANY(ARRAY(SELECT DISTINCT s::uuid FROM unnest($3::text[]) AS s WHERE s <> ''))
                      AND \(activeTurn("j"))
                    ORDER BY j.id
                    FOR NO KEY UPDATE
                )
                INSERT INTO \(table) (id, queue, session_id, prompt, payload, priority, run_at, max_attempts, status, user_id)
                SELECT id, queue, NULLIF(session_id, '')::uuid, prompt, payload::jsonb, priority::integer,
                    CASE WHEN run_at < 0 THEN now() ELSE to_timestamp(run_at) END, max_attempts::integer, 'pending',
                    NULLIF(user_id, '')::uuid
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::float8[], $8::bigint[], $9::text[])
                    AS t(id, queue, session_id, prompt, payload, priority, run_at, max_attempts, user_id)
                WHERE (SELECT count(*) FROM active) >= 0
                """
        )
    }

    /// The claim: `$1` queues, `$2` how many, `$3` the worker's id, `$4` the lease in milliseconds.
    ///
    /// Each job's `claimed` event is numbered after the last event the statement's snapshot
    /// shows. Every writer of a job's events holds its lease, and a job becomes claimable only
    /// by a write that commits after theirs, so no event the snapshot misses can take that
    /// number: the plain form stores the events without `ON CONFLICT` (1.2 us of the statement's
    /// 15 a job, `scripts/bench-floor`). `skippingStored` adds it, for a claim that failed with a
    /// unique violation all the same (an event written by hand for a pending job); its `claimed`
    /// event is then not stored.
    static func makeClaimStatement(table: String, eventsTable: String, skippingStored: Bool) -> StoreStatement.Text {
        StoreStatement.Text(
            name: skippingStored ? "mobvibe_claim_again" : "mobvibe_claim",
            sql: """
                WITH claimed AS (
                UPDATE \(table) AS j
                SET status = 'processing', attempts = j.attempts + 1, locked_by = $3::text, started_at = now(),
                    lease_expires_at = now() + $4::bigint * interval '1 millisecond'
                -- Rows are picked (and locked) first, then updated by id: whatever the row estimates,
                -- the update reaches them through the primary key. (A join form planned for an
                -- unknown LIMIT, as a cached generic plan is, scanned the whole table.)
                WHERE j.id = ANY(ARRAY(
                    -- Per queue, the claim index delivers rows in order, so a claim reads only the
                    -- rows it may take (a plain queue = ANY(...) would read every pending row and sort).
                    SELECT candidate.id FROM unnest($1::text[]) AS served(queue)
                    CROSS JOIN LATERAL (
                        SELECT id, priority, run_at FROM \(table)
                        WHERE status = 'pending' AND NOT held_by_session AND run_at <= now() AND queue = served.queue
                        ORDER BY priority DESC, run_at, id
                        LIMIT $2::bigint
                        FOR UPDATE SKIP LOCKED
                    ) AS candidate
                    ORDER BY candidate.priority DESC, candidate.run_at, candidate.id
                    LIMIT $2::bigint
                ))
                -- The job's last event, for this attempt's to number on from (one probe of the
                -- events' primary key); the job's user, for its events (read after the columns
                -- the worker decodes, and not by it).
                RETURNING \(Self.claimColumns), (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = j.id) AS last_seq,
                    j.user_id
                ), noted AS (
                    -- Each job's `claimed` event, in the claim's own statement (no round trip, no
                    -- lock of its own: the claim holds the rows).
                    INSERT INTO \(eventsTable) (job_id, seq, attempt, kind, data, user_id)
                    SELECT c.id, c.last_seq + 1, c.attempts, 'status',
                        jsonb_build_object('status', 'claimed', 'workerId', $3::text, 'attempt', c.attempts), c.user_id
                    FROM claimed AS c\(Self.skippingStoredEvents(skippingStored))
                )
                SELECT * FROM claimed
                """
        )
    }

    /// Events of running jobs. The batch's distinct leases: `$1` job ids, `$2` worker ids, `$3`
    /// attempts, `$8` the sequence number each lease's first event in the batch follows; then
    /// one element of each array an event: `$4` its lease (a 1-based index into the lease
    /// arrays), `$5` sequence numbers, `$6` kinds, `$7` data (JSON object text).
    /// Returns the indexes of the leases that hold, negated for those whose job's last stored
    /// event is before the one their events follow (an earlier write answered but never
    /// committed: storing these would leave a gap for good, so they are not), then 0. Only the
    /// positive ones' events are stored. An event is matched by lease, not by job: an earlier
    /// attempt's late events may share a batch with the current attempt's, when this worker
    /// claimed the job again.
    ///
    /// Two forms: `skippingStored` adds `ON CONFLICT DO NOTHING`, for a write repeated after its
    /// answer was lost. The plain form is the one used (the conflict check took a quarter of the
    /// statement's time); it fails with a unique violation on such a repeat, and the write is
    /// then made again in the other form.
    static func makeAppendEventsStatement(table: String, eventsTable: String, channel: String, skippingStored: Bool) -> StoreStatement.Text {
        StoreStatement.Text(
            name: skippingStored ? "mobvibe_append_events_again" : "mobvibe_append_events",
            sql: """
                WITH held AS (
                    -- The leases that hold, their jobs key-share-locked (in id order, as outcome
                    -- writes lock them) until the events are in: a rescue or a new claim of the
                    -- job (FOR UPDATE) waits, so the next attempt numbers its events after these
                    -- (its claim reads the last). The weakest lock that does so: FOR SHARE also
                    -- waited for a session's admission of a new turn (FOR NO KEY UPDATE on the
                    -- running turn, held by a producer's transaction until it commits), and this
                    -- one statement, every running job's events with it.
                    -- `follows`: the job's last stored event (one probe of the events' primary
                    -- key) is at least the one these events follow. Events are written in order,
                    -- each batch only after the one before it, so this holds exactly when every
                    -- earlier event is stored.
                    SELECT l.n::int AS n, j.id, j.user_id,
                        (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = j.id) >= l.previous AS follows
                    FROM \(table) AS j
                    JOIN unnest($1::uuid[], $2::text[], $3::bigint[], $8::bigint[]) WITH ORDINALITY AS l(job_id, worker, attempt, previous, n)
                        ON j.id = l.job_id AND j.locked_by = l.worker AND j.attempts = l.attempt
                    WHERE j.status IN ('processing', 'cancelled')
                    ORDER BY j.id
                    FOR KEY SHARE OF j
                ), inserted AS (
                    -- (Not referenced: a data-modifying CTE runs to completion all the same.)
                    INSERT INTO \(eventsTable) (job_id, seq, attempt, kind, data, user_id)
                    SELECT ($1::uuid[])[v.lease], v.seq, ($3::bigint[])[v.lease], v.kind, v.data::jsonb, h.user_id
                    FROM unnest($4::int4[], $5::bigint[], $6::text[], $7::text[]) AS v(lease, seq, kind, data)
                    JOIN held AS h ON h.n = v.lease
                    WHERE h.follows\(Self.skippingStoredEvents(skippingStored))
                ), notified AS (
                    -- Readers following these jobs: their ids, 100 to a notification (a payload
                    -- holds at most 8,000 bytes).
                    SELECT pg_notify('\(channel)', string_agg(c.id::text, ',')) FROM (
                        SELECT d.id, (row_number() OVER (ORDER BY d.id) - 1) / 100 AS chunk
                        FROM (SELECT DISTINCT id FROM held WHERE follows) AS d
                    ) AS c GROUP BY c.chunk
                )
                -- Then a last row of 0: an answer without it was cut short (a connection lost as
                -- the server stopped), and the write is made again rather than taken as refused.
                SELECT CASE WHEN follows THEN n ELSE -n END FROM held WHERE (SELECT count(*) FROM notified) >= 0
                UNION ALL SELECT 0
                """
        )
    }

    /// Outcomes of many jobs, each row applied only while its lease holds: `$1` ids, `$2` worker
    /// ids, `$3` attempts, `$4` kinds (completed, retry, failed, released, deferred), `$5` results,
    /// `$6` errors, `$7` retry delays in milliseconds, `$8` the status `processing`, `$9` and
    /// `$10` the sequence numbers (0: none) and data of the attempts' ending events, `$11`-`$16`
    /// the attempts' input tokens, output tokens, cost, CPU seconds, peak memory and run seconds
    /// (added to the job's; the peak the larger), `$17` the events the ending events follow. Returns the
    /// ids it applied. A turn that fails for good holds its session when `failureBlocksSession`
    /// (``SessionFailurePolicy/block``).
    static func makeRecordStatement(table: String, eventsTable: String, channel: String, failureBlocksSession: Bool) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_record",
            sql: """
                WITH done AS (
                UPDATE \(table) AS j SET
                    status = CASE v.kind WHEN 'completed' THEN 'completed' WHEN 'failed' THEN 'failed' ELSE 'pending' END,
                    result = CASE WHEN v.kind = 'completed' THEN v.result::jsonb ELSE j.result END,
                    last_error = CASE WHEN v.kind IN ('retry', 'failed', 'deferred') THEN v.error ELSE j.last_error END,
                    run_at = CASE WHEN v.kind IN ('retry', 'deferred') THEN now() + v.delay_ms * interval '1 millisecond' ELSE j.run_at END,
                    attempts = CASE WHEN v.kind IN ('released', 'deferred') THEN j.attempts - 1 ELSE j.attempts END,
                    completed_at = CASE WHEN v.kind IN ('completed', 'failed') THEN now() ELSE NULL END,
                    blocks_session = (v.kind = 'failed' AND j.session_id IS NOT NULL AND \(failureBlocksSession)),
                    input_tokens = \(Self.tokenSum("input_tokens")), output_tokens = \(Self.tokenSum("output_tokens")),
                    cost_usd = j.cost_usd + v.cost_usd, cpu_seconds = j.cpu_seconds + v.cpu_seconds,
                    peak_memory_bytes = greatest(j.peak_memory_bytes, v.peak_memory_bytes), run_seconds = j.run_seconds + v.run_seconds,
                    locked_by = NULL, lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $9::bigint[], $10::text[],
                            $11::bigint[], $12::bigint[], $13::float8[], $14::float8[], $15::bigint[], $16::float8[], $17::bigint[])
                    AS v(id, worker, attempt, kind, result, error, delay_ms, event_seq, event_data, input_tokens, output_tokens, cost_usd,
                         cpu_seconds, peak_memory_bytes, run_seconds, follows)
                -- $8 is 'processing', passed as a value: as a literal it would let a cached generic
                -- plan (made for an unknown number of outcomes) walk the partial lease index, with
                -- its dead entries, instead of looking each job up by id.
                WHERE j.id = v.id AND j.status = $8::text AND j.locked_by = v.worker AND j.attempts = v.attempt
                    AND \(Self.endingEventFollows(eventsTable: eventsTable))
                RETURNING j.id, v.attempt, v.event_seq, v.event_data, j.user_id
                )\(endingEvents(eventsTable: eventsTable, channel: channel, skippingStored: true))
                """
        )
    }

    /// The common batch, completions only, all by one worker: `$1` ids, `$2` attempts, `$3`
    /// results, `$4` the worker's id, `$5` the status `processing`, `$6` and `$7` the ending
    /// events' sequence numbers (0: none) and data, `$8`-`$13` the attempts' usage, `$14` the
    /// events the ending events follow. Does what ``recordStatement`` does for
    /// completions, with fewer arrays and no per-row choices. Returns the ids it applied.
    ///
    /// Its ending events go in without `ON CONFLICT`: an event is written only for a row whose
    /// lease the same statement found holding, numbered by the lease's holder, the only writer of
    /// that attempt's events, so none is there already, and the check cost PostgreSQL 1.7 us of
    /// the statement's 15 a job (`scripts/bench-floor`, docs/BENCHMARKS.md). Should one be there
    /// all the same (an event written by hand), the statement fails with a unique violation and
    /// the batch is written again with ``recordStatement``, which skips it.
    static func makeCompleteStatement(table: String, eventsTable: String, channel: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_complete",
            sql: """
                WITH done AS (
                UPDATE \(table) AS j SET
                    status = 'completed', result = v.result::jsonb, completed_at = now(),
                    input_tokens = \(Self.tokenSum("input_tokens")), output_tokens = \(Self.tokenSum("output_tokens")),
                    cost_usd = j.cost_usd + v.cost_usd, cpu_seconds = j.cpu_seconds + v.cpu_seconds,
                    peak_memory_bytes = greatest(j.peak_memory_bytes, v.peak_memory_bytes), run_seconds = j.run_seconds + v.run_seconds,
                    locked_by = NULL, lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::bigint[], $3::text[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::float8[],
                            $11::float8[], $12::bigint[], $13::float8[], $14::bigint[])
                    AS v(id, attempt, result, event_seq, event_data, input_tokens, output_tokens, cost_usd, cpu_seconds, peak_memory_bytes, run_seconds,
                         follows)
                WHERE j.id = v.id AND j.status = $5::text AND j.locked_by = $4::text AND j.attempts = v.attempt
                    AND \(Self.endingEventFollows(eventsTable: eventsTable))
                RETURNING j.id, v.attempt, v.event_seq, v.event_data, j.user_id
                )\(endingEvents(eventsTable: eventsTable, channel: channel, skippingStored: false))
                """
        )
    }

    /// The job's `column` plus the attempt's (`v.column`), at most ``JobUsage/maximumTokens``:
    /// the job's own value is bounded first, so a value written by hand cannot make it overflow.
    static func tokenSum(_ column: String) -> String {
        "least(least(j.\(column), \(JobUsage.maximumTokens)) + v.\(column), \(JobUsage.maximumTokens))"
    }

    /// The condition of an outcome statement (`v` the outcome, `j` the job) that its ending event
    /// follows the job's last stored event (`v.follows`, 0: nothing to check, see
    /// ``JobCompletion/FinalEvent/follows``): as for a batch of events (``appendEventsStatement``),
    /// an outcome after events that were answered but never committed is not applied, so that
    /// no job ends with a gap in its events. (The job stays with its lease, no longer renewed,
    /// and the rescue gives it its next attempt.)
    ///
    /// Exactly that event (or the outcome's own ending event, stored already by hand), not a
    /// later one: a later one is a newer run's. A release (or a deferral) gives the attempt number
    /// back, so when its write committed but its answer was lost and this worker claimed the job
    /// again before writing it again, the second write found the same lease (id, worker,
    /// attempt) on the new run and put the job back to pending while it ran (then another worker
    /// could take it too). The new run's `claimed` event is after the release's ending event,
    /// so the write no longer matches.
    static func endingEventFollows(eventsTable: String) -> String {
        "(v.follows = 0 OR (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = j.id) IN (v.follows, v.event_seq))"
    }

    /// The end of an events insert in its `skippingStored` form: events stored already are
    /// skipped; without it, one stored already fails the statement (unique violation), the
    /// cheaper form (see ``makeClaimStatement(table:eventsTable:skippingStored:)``).
    static func skippingStoredEvents(_ skippingStored: Bool) -> String {
        skippingStored ? "\nON CONFLICT (job_id, seq) DO NOTHING" : ""
    }

    /// The end of an outcome statement whose `done` CTE returns the applied rows with their
    /// ending events: the events stored (`skippingStored`: those not stored already), their
    /// jobs' readers notified (100 ids a notification), the applied ids returned.
    static func endingEvents(eventsTable: String, channel: String, skippingStored: Bool) -> String {
        """
        , noted AS (
            INSERT INTO \(eventsTable) (job_id, seq, attempt, kind, data, user_id)
            SELECT d.id, d.event_seq, d.attempt, 'status', d.event_data::jsonb, d.user_id FROM done AS d WHERE d.event_seq > 0\(Self.skippingStoredEvents(skippingStored))
            RETURNING job_id
        ), notified AS (
            SELECT pg_notify('\(channel)', string_agg(c.job_id::text, ',')) FROM (
                SELECT n.job_id, (row_number() OVER () - 1) / 100 AS chunk FROM noted AS n
            ) AS c GROUP BY c.chunk
        )
        SELECT d.id FROM done AS d WHERE (SELECT count(*) FROM notified) >= 0
        """
    }
}
