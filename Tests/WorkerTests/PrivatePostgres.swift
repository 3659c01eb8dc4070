import Foundation

/// A PostgreSQL cluster of one test's own, for tests that stop or restart the server (the shared
/// one of `scripts/with-postgres` serves other suites running in parallel). Uses the binaries
/// and OS user that `scripts/with-postgres` exports.
final class PrivatePostgres: @unchecked Sendable {
    // @unchecked: immutable after init; used by one test at a time.
    let root: String
    let data: String
    let port: Int
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// A new cluster, started; made off the cooperative pool (initdb and pg_ctl block for seconds).
    static func make() async throws -> PrivatePostgres {
        try await TestPostgres.offThePool { try PrivatePostgres() }
    }

    /// Blocks while initdb and pg_ctl run: call it off the cooperative pool (``make()``).
    init() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("private-pg-\(UUID().uuidString.prefix(8))").path
        self.root = root
        data = root + "/data"
        port = try freePort()
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let data = self.data, port = self.port
        do {
            if getuid() == 0 {
                try FileManager.default.setAttributes([.ownerAccountName: TestPostgres.environment["TEST_PG_USER"]!], ofItemAtPath: root)
            }
            let bin = TestPostgres.environment["TEST_PG_BIN"]!
            try TestPostgres.asServerUser("\(bin)/initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
            let settings = """
                listen_addresses = '127.0.0.1'
                port = \(port)
                unix_socket_directories = '\(root)'
                fsync = on

                """
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: data + "/postgresql.conf"))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(settings.utf8))
            try handle.close()
            try TestPostgres.asServerUser("\(bin)/pg_ctl", ["-D", data, "start", "-w", "-l", data + "/server.log"])
        } catch {
            // Nobody gets the cluster to destroy: a server that started after all, and the
            // files, go now.
            _ = try? TestPostgres.asServerUser("\(TestPostgres.environment["TEST_PG_BIN"] ?? "")/pg_ctl", ["-D", data, "stop", "-m", "immediate", "-w"])
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
    }

    func start() async throws {
        try await TestPostgres.pgctl(["start", "-w", "-l", data + "/server.log"], data: data)
    }

    func stop(mode: String = "fast") async throws {
        try await TestPostgres.pgctl(["stop", "-m", mode, "-w"], data: data)
    }

    /// Stops the server (whatever its state) and removes its files.
    func destroy() {
        _ = try? TestPostgres.asServerUser("\(TestPostgres.environment["TEST_PG_BIN"]!)/pg_ctl", ["-D", data, "stop", "-m", "immediate", "-w"])
        try? FileManager.default.removeItem(atPath: root)
    }

    @discardableResult
    func sql(_ statement: String) async throws -> String {
        let url = self.url
        return try await TestPostgres.offThePool { try TestPostgres.run("/usr/bin/psql", [url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement]) }
    }
}
