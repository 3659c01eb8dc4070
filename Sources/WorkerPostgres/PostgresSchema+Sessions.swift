import WorkerCore

/// The sessions part of the PostgreSQL schema (version 3).
extension PostgresSchema {
    /// Coding sessions (docs/WORKER_SERVICE.md, "Sessions"): one turn of a session at a time,
    /// in order. The database keeps the rule itself, for any writer (this worker, a backend,
    /// psql), with triggers that hold every pending turn back (`held_by_session`) and let one
    /// through when its session has no active turn; a unique index makes two active turns of
    /// one session impossible whatever happens.
    var sessionMigration: [String] {
        [
            "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS held_by_session boolean NOT NULL DEFAULT false",
            "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS blocks_session boolean NOT NULL DEFAULT false",
            // On a session's active turn: whether turns wait behind it. A turn that finishes
            // with none waiting needs nothing done for its session, and most sessions (a
            // phone's user waits for the answer before the next prompt) are like that.
            "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS session_has_waiting boolean NOT NULL DEFAULT false",
            // Existing turns: every pending one held, then the oldest of each session that
            // runs nothing let through.
            "UPDATE \(table) SET held_by_session = true WHERE session_id IS NOT NULL AND status = 'pending'",
            """
            UPDATE \(table) AS j SET held_by_session = false
            FROM (SELECT DISTINCT ON (session_id) id, session_id FROM \(table)
                  WHERE session_id IS NOT NULL AND status = 'pending' ORDER BY session_id, created_at, id) AS first
            WHERE j.id = first.id
              AND NOT EXISTS (SELECT 1 FROM \(table) AS r WHERE r.session_id = first.session_id AND r.status = 'processing')
            """,
            """
            UPDATE \(table) AS j SET session_has_waiting = true
            WHERE j.session_id IS NOT NULL AND \(Self.activeTurn("j"))
              AND EXISTS (SELECT 1 FROM \(table) AS w WHERE w.session_id = j.session_id AND w.status = 'pending' AND w.held_by_session)
            """,
            // Jobs of the previous schema's workers may run two turns of one session at once
            // (nothing stopped them): the index is then made without UNIQUE, and the triggers
            // still let no new turn through while one is active.
            """
            DO $$ BEGIN
                CREATE UNIQUE INDEX IF NOT EXISTS "\(tableName)_session_turn_idx" ON \(table) (session_id)
                    WHERE session_id IS NOT NULL AND \(Self.activeTurn(nil))
            ;
            EXCEPTION WHEN unique_violation THEN
                CREATE INDEX IF NOT EXISTS "\(tableName)_session_turn_idx" ON \(table) (session_id)
                    WHERE session_id IS NOT NULL AND \(Self.activeTurn(nil));
            END $$
            """,
            """
            CREATE INDEX IF NOT EXISTS "\(tableName)_session_wait_idx" ON \(table) (session_id, created_at, id)
                WHERE status = 'pending' AND held_by_session
            """,
            // The claim index, now without the turns that wait for their session: a claim
            // never reads them, however many wait.
            "DROP INDEX IF EXISTS \"\(schemaName)\".\"\(tableName)_claim_idx\"",
            """
            CREATE INDEX IF NOT EXISTS "\(tableName)_claim_idx" ON \(table) (queue, priority DESC, run_at, id)
                WHERE status = 'pending' AND NOT held_by_session
            """,
            // Lets waiting turns through, when their sessions have no active turn. Called by
            // whoever changed a session's turns (the triggers below), in one of two ways
            // (docs/WORKER_SERVICE.md, "Sessions", says why together they are race-free):
            // - release (`_session_release`): the session's active turn stopped being active.
            //   That change holds the turn's row lock until it commits, and the session had no
            //   other active turn, so the next goes through at once. The sessions a statement
            //   released are collected (a transaction-local setting) and let through together
            //   when the statement ends: one statement for a whole batch of outcomes.
            // - admit (`_session_admit`): anything else (a turn inserted, retried by an
            //   operator, moved by hand). It takes the session's lock (a transaction-scoped
            //   advisory lock, so admits of one session run one at a time), waits for whoever
            //   is changing the active turn (its row lock), and looks again with a snapshot
            //   taken after that: a turn let through by a release that committed meanwhile is seen.
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_let_through"(sessions uuid[]) RETURNS void
            LANGUAGE plpgsql
            -- The update below names the waiting state through variables, and its plan is
            -- generic: the planner cannot then walk the whole index of waiting turns to find
            -- the few it lets through (with a few waiting when statistics were taken, it
            -- did, once per call: quadratic in a batch). It goes by id.
            SET plan_cache_mode = force_generic_plan
            AS $$
            DECLARE
                missed uuid[];
                admitted bigint;
                waiting_status text := 'pending';
                still_held boolean := true;
            BEGIN
                LOOP
                    -- Each session's oldest waiting turn (one index probe a session), let through.
                    WITH next AS (
                        SELECT n.id, s.session FROM (SELECT DISTINCT unnest(sessions) AS session) AS s
                        CROSS JOIN LATERAL (
                            SELECT w.id FROM \(table) AS w
                            WHERE w.session_id = s.session AND w.status = 'pending' AND w.held_by_session
                            ORDER BY w.created_at, w.id LIMIT 1
                        ) AS n
                    ), let_through AS (
                        UPDATE \(table) AS t SET held_by_session = false,
                            session_has_waiting = EXISTS (
                                SELECT 1 FROM \(table) AS b WHERE b.session_id = t.session_id AND b.status = 'pending'
                                    AND b.held_by_session AND b.id <> t.id)
                        FROM next
                        WHERE t.id = next.id AND t.status = waiting_status AND t.held_by_session = still_held
                        RETURNING t.session_id
                    )
                    SELECT (SELECT count(*) FROM let_through),
                        (SELECT array_agg(next.session) FROM next WHERE next.session NOT IN (SELECT session_id FROM let_through))
                    INTO admitted, missed;
                    IF admitted > 0 THEN
                        -- Wake the workers: a turn let through by an outcome is no insert, so
                        -- the insert trigger does not tell them.
                        PERFORM pg_notify('\(channel)', 'jobs');
                    END IF;
                    -- A turn that changed while this waited for its row (cancelled, deleted):
                    -- those sessions try their next turn.
                    EXIT WHEN missed IS NULL;
                    sessions := missed;
                END LOOP;
            END
            $$
            """,
            sessionAdmitFunction,
            // At the end of each UPDATE or DELETE statement: the sessions whose active turn it
            // released move on, together.
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_release"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            DECLARE
                released text := current_setting('\(releasedSetting)', true);
            BEGIN
                IF released IS NULL OR released = '' THEN
                    RETURN NULL;
                END IF;
                PERFORM set_config('\(releasedSetting)', '', true);
                PERFORM "\(schemaName)"."\(tableName)_session_let_through"(string_to_array(rtrim(released, ','), ',')::uuid[]);
                RETURN NULL;
            END
            $$
            """,
            // A turn that becomes pending (inserted, retried, rescued, given back) waits for
            // its session; the AFTER trigger then lets it through if it is next.
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_hold"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                NEW.held_by_session := true;
                NEW.blocks_session := false;
                RETURN NEW;
            END
            $$
            """,
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_changed"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    PERFORM "\(schemaName)"."\(tableName)_session_admit"(NEW.session_id);
                ELSIF TG_OP = 'DELETE' THEN
                    PERFORM set_config('\(releasedSetting)', coalesce(current_setting('\(releasedSetting)', true), '') || OLD.session_id::text || ',', true);
                ELSIF OLD.session_id IS NOT DISTINCT FROM NEW.session_id THEN
                    IF \(Self.activeTurn("OLD")) THEN
                        -- The active turn stopped being active (it finished, failed, was given
                        -- back, rescued, or its cancellation completed): released at the
                        -- statement's end.
                        PERFORM set_config('\(releasedSetting)', coalesce(current_setting('\(releasedSetting)', true), '') || NEW.session_id::text || ',', true);
                    ELSE
                        -- A turn started waiting (an operator's retry, a change by hand).
                        PERFORM "\(schemaName)"."\(tableName)_session_admit"(NEW.session_id);
                    END IF;
                ELSE
                    -- A turn moved to another session by hand: both sessions admit, in id order.
                    IF OLD.session_id IS NOT NULL AND (NEW.session_id IS NULL OR OLD.session_id < NEW.session_id) THEN
                        PERFORM "\(schemaName)"."\(tableName)_session_admit"(OLD.session_id);
                    END IF;
                    IF NEW.session_id IS NOT NULL THEN
                        PERFORM "\(schemaName)"."\(tableName)_session_admit"(NEW.session_id);
                    END IF;
                    IF OLD.session_id IS NOT NULL AND NEW.session_id IS NOT NULL AND OLD.session_id > NEW.session_id THEN
                        PERFORM "\(schemaName)"."\(tableName)_session_admit"(OLD.session_id);
                    END IF;
                END IF;
                RETURN NULL;
            END
            $$
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_hold_insert\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_hold_insert" BEFORE INSERT ON \(table)
                FOR EACH ROW WHEN (NEW.session_id IS NOT NULL AND NEW.status = 'pending')
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_hold"()
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_hold_update\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_hold_update" BEFORE UPDATE ON \(table)
                FOR EACH ROW WHEN (NEW.session_id IS NOT NULL AND NEW.status = 'pending'
                    AND (OLD.status <> 'pending' OR OLD.session_id IS DISTINCT FROM NEW.session_id))
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_hold"()
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_insert\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_insert" AFTER INSERT ON \(table)
                FOR EACH ROW WHEN (NEW.session_id IS NOT NULL)
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_changed"()
            """,
            // Fires only when a turn starts waiting, or stops being active while turns wait
            // behind it or to wait itself (not for a claim, a renewal, a promotion, nor a
            // turn that ends with none behind it), so most writes never call it.
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_update\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_update" AFTER UPDATE ON \(table)
                FOR EACH ROW WHEN ((OLD.session_id IS NOT NULL OR NEW.session_id IS NOT NULL) AND (
                    OLD.session_id IS DISTINCT FROM NEW.session_id
                    OR (\(Self.activeTurn("OLD")) AND NOT \(Self.activeTurn("NEW")) AND (OLD.session_has_waiting OR NEW.status = 'pending'))
                    OR (NEW.status = 'pending' AND NEW.held_by_session AND NOT (OLD.status = 'pending' AND OLD.held_by_session))))
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_changed"()
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_delete\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_delete" AFTER DELETE ON \(table)
                FOR EACH ROW WHEN (OLD.session_id IS NOT NULL AND \(Self.activeTurn("OLD")) AND OLD.session_has_waiting)
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_changed"()
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_release\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_release" AFTER UPDATE OR DELETE ON \(table)
                FOR EACH STATEMENT EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_release"()
            """,
        ]
    }

    /// Admits a turn inserted (or made pending by hand) into its session, under the session's
    /// advisory lock: it waits for whoever changes the session's active turn (a row lock), and
    /// then waits behind it or is let through. The lock on the active turn is `FOR NO KEY
    /// UPDATE`, the lock an update of it takes: strong enough to wait for that update, and one
    /// a worker's batch of events (`FOR KEY SHARE`) does not wait for. With `FOR UPDATE` a
    /// producer's transaction left open after inserting a turn held every running job's events
    /// of the worker running that session (and their outcomes behind them) until it committed.
    var sessionAdmitFunction: String {
        """
        CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_admit"(turn_session uuid) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(\(Self.sessionLockClass(tableName)), hashtext(turn_session::text));
            PERFORM 1 FROM \(table) AS t WHERE t.session_id = turn_session AND \(Self.activeTurn("t")) FOR NO KEY UPDATE;
            IF EXISTS (SELECT 1 FROM \(table) AS t WHERE t.session_id = turn_session AND \(Self.activeTurn("t"))) THEN
                -- The turn waits: its session's active turn must let it through when it ends.
                UPDATE \(table) AS t SET session_has_waiting = true
                WHERE t.session_id = turn_session AND \(Self.activeTurn("t")) AND NOT t.session_has_waiting;
            ELSE
                PERFORM "\(schemaName)"."\(tableName)_session_let_through"(ARRAY[turn_session]);
            END IF;
        END
        $$
        """
    }

    /// Version 11: ``sessionAdmitFunction`` with its weaker lock.
    var sessionAdmitLockMigration: [String] {
        [sessionAdmitFunction]
    }

    /// Version 9: two writes by hand that left a session wrong. A turn whose `session_id` is set
    /// to NULL was still held (the hold trigger fired only for a session): it never ran. A
    /// running turn deleted let its session's next turn start beside its command: such a delete
    /// is now refused, naming the cancel that lets it go.
    var sessionRepairMigration: [String] {
        [
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_hold"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.session_id IS NULL THEN
                    -- Taken out of its session: nothing holds it.
                    NEW.held_by_session := false;
                    NEW.session_has_waiting := false;
                ELSE
                    NEW.held_by_session := true;
                END IF;
                NEW.blocks_session := false;
                RETURN NEW;
            END
            $$
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_hold_update\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_hold_update" BEFORE UPDATE ON \(table)
                FOR EACH ROW WHEN ((NEW.session_id IS NOT NULL AND NEW.status = 'pending'
                    AND (OLD.status <> 'pending' OR OLD.session_id IS DISTINCT FROM NEW.session_id))
                    OR (NEW.session_id IS NULL AND OLD.session_id IS NOT NULL))
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_hold"()
            """,
            // Through the index of waiting turns (its predicate), not a scan of the whole table
            // under the migration's lock; a failed row's blocks_session holds no session once
            // it has none.
            "UPDATE \(table) SET held_by_session = false WHERE status = 'pending' AND held_by_session AND session_id IS NULL",
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_delete_check"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'a running turn of a session cannot be deleted: its session''s next turn would start beside its command'
                    USING ERRCODE = 'object_in_use', HINT = 'Cancel it first (worker jobs cancel ID), then delete it once it has stopped.';
            END
            $$
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_session_delete_check\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_session_delete_check" BEFORE DELETE ON \(table)
                FOR EACH ROW WHEN (OLD.session_id IS NOT NULL AND (OLD.status = 'processing' OR (OLD.status = 'cancelled' AND OLD.lease_expires_at IS NOT NULL)))
                EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_delete_check"()
            """,
        ]
    }

    /// True for a row (`alias`) that is its session's active turn: running, due to run, a
    /// failure that holds the session (`SESSION_ON_FAILURE=block`), or cancelled while its
    /// worker is still stopping it (the lease is cleared when the command has stopped).
    static func activeTurn(_ alias: String?) -> String {
        let alias = alias.map { "\($0)." } ?? ""
        return """
        (\(alias)status = 'processing' OR (\(alias)status = 'pending' AND NOT \(alias)held_by_session) \
        OR (\(alias)status = 'failed' AND \(alias)blocks_session) OR (\(alias)status = 'cancelled' AND \(alias)lease_expires_at IS NOT NULL))
        """
    }

    /// The transaction-local setting in which a statement's row triggers collect the sessions
    /// whose active turn it released (comma-separated ids), for its statement trigger.
    var releasedSetting: String { "mobvibe.released_\(tableName.lowercased())" }

    /// The first key of the sessions' advisory locks (the second is the session id's hash): one
    /// class per table, apart from the one-key locks of migrations and retention.
    static func sessionLockClass(_ tableName: String) -> String {
        "hashtext('mobvibe-worker:session:\(tableName)')"
    }

}
