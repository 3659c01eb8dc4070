/// The user of each job event (version 10), for row-level security on the events table.
///
/// The events' policy checked each event against its job (`EXISTS` on the jobs table): right,
/// but a signed-in user's read without a job filter (`select * from coding_job_events`, or with
/// a `limit`) made PostgreSQL scan every user's events to find theirs, 105-235 ms at two million
/// events and growing with the table, for any user, as often as they like. With the job's user
/// on the event itself, the policy is `user_id = auth.uid()` and such a read goes through an
/// index of the user's events; a read of one job's events, and Realtime's check of each new
/// event, stay a lookup.
extension PostgresSchema {
    /// Version 10: the column, filled in for the events stored so far. The worker's event
    /// writes (the claim's `claimed` event, batches of events, ending events) carry the job's
    /// user from the row they already hold.
    var eventUserMigration: [String] {
        [
            "ALTER TABLE \(eventsTable) ADD COLUMN IF NOT EXISTS user_id uuid",
            eventUserFillIn,
        ]
    }

    /// Gives each event of a job that has a user that user: through the jobs' user index and
    /// the events' primary key, so only the events of jobs that have a user are read.
    var eventUserFillIn: String {
        """
        UPDATE \(eventsTable) AS e SET user_id = j.user_id
        FROM \(table) AS j
        WHERE j.user_id IS NOT NULL AND e.job_id = j.id AND e.user_id IS DISTINCT FROM j.user_id
        """
    }

    /// With row-level security (``supabaseSetup(maximumPendingJobsPerUser:userQueues:)``): the
    /// index the policy reads, a trigger that fills in the user of an event stored without
    /// one (by a worker of an earlier version during a rolling upgrade, or by hand), so that no
    /// event of a user's job is hidden from them, and one that moves a job's events with the job
    /// when its user is changed. The worker's own writes carry the user and
    /// never call it, but for jobs without one (a lookup each).
    var supabaseEventUserStatements: [String] {
        [
            """
            CREATE INDEX IF NOT EXISTS "\(eventsTableName)_user_idx" ON \(eventsTable) (user_id, job_id, seq)
                WHERE user_id IS NOT NULL
            """,
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(eventsTableName)_user"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                NEW.user_id := (SELECT j.user_id FROM \(table) AS j WHERE j.id = NEW.job_id);
                RETURN NEW;
            END
            $$
            """,
            "DROP TRIGGER IF EXISTS \"\(eventsTableName)_user\" ON \(eventsTable)",
            """
            CREATE TRIGGER "\(eventsTableName)_user" BEFORE INSERT ON \(eventsTable)
                FOR EACH ROW WHEN (NEW.user_id IS NULL)
                EXECUTE FUNCTION "\(schemaName)"."\(eventsTableName)_user"()
            """,
            // A job given to another user (or taken from its user) by hand: its events follow,
            // so that the one it was taken from no longer reads them. Only an UPDATE that sets
            // `user_id` is looked at: the worker's own never do.
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(eventsTableName)_job_user"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE \(eventsTable) SET user_id = NEW.user_id WHERE job_id = NEW.id AND user_id IS DISTINCT FROM NEW.user_id;
                RETURN NULL;
            END
            $$
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_events_user\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_events_user" AFTER UPDATE OF user_id ON \(table)
                FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
                EXECUTE FUNCTION "\(schemaName)"."\(eventsTableName)_job_user"()
            """,
        ]
    }
}
