import Foundation
import WorkerTestSupport

/// The throwaway PostgreSQL of `scripts/with-postgres`, driven with `psql` and `pg_ctl`.
enum TestPostgres {
    static let environment = ProcessInfo.processInfo.environment
    static let url: String? = environment["TEST_DATABASE_URL"]
    static var isAvailable: Bool { url != nil }

    /// A table name of its own for one test.
    static func freshTable() -> String { "e2e_\(UUID().uuidString.prefix(8).lowercased())" }

    /// Runs SQL with psql and returns its unaligned, tuples-only output.
    @discardableResult
    static func sql(_ statement: String) async throws -> String {
        try await offThePool { try run("/usr/bin/psql", [url!, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement]) }
    }

    /// Runs `pg_ctl -D data ARGUMENTS` as the server's OS user.
    static func pgctl(_ arguments: [String], data: String) async throws {
        _ = try await offThePool { try asServerUser("\(environment["TEST_PG_BIN"]!)/pg_ctl", ["-D", data] + arguments) }
    }

    /// Runs `work` (a child process waited for with `waitpid`) on a thread of its own. Tests run
    /// in one process on Swift's cooperative pool, which has one thread per core: a test that
    /// blocked a pool thread while psql or pg_ctl ran (often in a polling loop) stalled every
    /// other test meanwhile, and their timing checks failed on a 2-core machine.
    static func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await WorkerTestSupport.offThePool(work)
    }

    /// Runs a PostgreSQL binary as the OS user that owns the clusters (never root).
    @discardableResult
    static func asServerUser(_ executable: String, _ arguments: [String]) throws -> String {
        if getuid() == 0 {
            return try run("/usr/sbin/runuser", ["-u", environment["TEST_PG_USER"]!, "--", executable] + arguments)
        }
        return try run(executable, arguments)
    }

    /// Runs a command to completion with `posix_spawn`, output to a temporary file.
    ///
    /// Not Foundation's `Process`: `pg_ctl start` leaves a daemon behind that inherits the
    /// descriptor `Process` uses to notice the child's exit, and `waitUntilExit()` then hangs.
    /// Here every descriptor above 2 is closed in the child.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap { Int32($0) }
        for fd in open where fd > 2 && fcntl(fd, F_GETFD) >= 0 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw CommandFailure(description: "cannot start \(executable): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard exitCode == 0 else {
            throw CommandFailure(description: "\(executable) \(arguments.joined(separator: " ")) exited \(exitCode): \(text)")
        }
        return text
    }

    struct CommandFailure: Error, CustomStringConvertible {
        var description: String
    }
}
