import ArgumentParser
import WorkerService

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade the database schema (idempotent; run also does it at start).",
        discussion: """
            --supabase also applies row-level security for a Supabase project (a user reads only their own jobs \
            and events; writes go through the functions enqueue_coding_job, cancel_coding_job and retry_coding_job, \
            at most MAX_PENDING_JOBS_PER_USER pending jobs a user) and adds the tables to Supabase Realtime. \
            See docs/WORKER_SERVICE.md, "Supabase".
            """
    )

    @Flag(help: "Also apply row-level security and the app's functions for a Supabase project (PostgreSQL only).") var supabase = false
    @Flag(name: .customLong("print-sql"), help: "With --supabase: print the SQL it would run after the schema migration, and change nothing.") var printSQL = false

    func validate() throws {
        if printSQL, !supabase { throw ValidationError("--print-sql goes with --supabase") }
    }

    func run() async throws {
        if printSQL {
            output(SupabaseSecurity.sql(for: try await WorkerConfiguration.load()))
            return
        }
        let context = try await CommandContext.load()
        let maximumPending = context.configuration.maxPendingJobsPerUser
        let userQueues = context.configuration.supabaseUserQueues
        let supabase = self.supabase
        try await context.withStore(migrate: true) { store in
            if supabase { try await SupabaseSecurity.apply(to: store, maximumPendingJobsPerUser: maximumPending, userQueues: userQueues) }
        }
        output(supabase
            ? "Schema is up to date, with row-level security for Supabase (\(context.configuration.store))"
            : "Schema is up to date (\(context.configuration.store))")
    }
}
