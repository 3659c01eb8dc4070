import Foundation
import Testing
@testable import WorkerExecution

@Suite("SandboxEtc")
struct SandboxEtcTests {
    @Test("the sandbox's /etc holds only what every user may read: no private keys; links at the top are copied as their content, links inside stay links")
    func onlyWorldReadable() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("etc-test-\(UUID().uuidString)").path
        let etc = "\(root)/etc", parent = "\(root)/staged"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let files = FileManager.default
        for directory in [etc, "\(etc)/ssl/certs", "\(etc)/ssl/private", "\(etc)/alternatives", parent, "\(root)/run"] {
            try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        func write(_ path: String, _ text: String, mode: Int16) throws {
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            chmod(path, mode_t(mode))
        }
        try write("\(etc)/passwd", "root:x:0:0::/root:/bin/sh\n", mode: 0o644)
        try write("\(etc)/ssl/certs/ca.pem", "CERT", mode: 0o644)
        try write("\(etc)/ssl/private/host.key", "PRIVATE KEY", mode: 0o600)
        chmod("\(etc)/ssl/private", 0o700)
        try write("\(etc)/shadow-like", "secret", mode: 0o640)
        try write("\(root)/run/resolv.conf", "nameserver 10.0.0.2\n", mode: 0o644)
        try files.createSymbolicLink(atPath: "\(etc)/resolv.conf", withDestinationPath: "\(root)/run/resolv.conf")
        try files.createSymbolicLink(atPath: "\(etc)/alternatives/editor", withDestinationPath: "/usr/bin/vim.basic")

        let staged = try #require(SandboxEtc.stage(entries: ["passwd", "ssl", "shadow-like", "resolv.conf", "alternatives", "missing"], from: etc, into: parent))
        #expect(try String(contentsOfFile: "\(staged)/passwd", encoding: .utf8).hasPrefix("root:x:0:0"))
        #expect(files.fileExists(atPath: "\(staged)/ssl/certs/ca.pem"))
        #expect(!files.fileExists(atPath: "\(staged)/ssl/private"), "a directory only its owner may search is left out")
        #expect(!files.fileExists(atPath: "\(staged)/shadow-like"), "a file others may not read is left out")
        #expect(try String(contentsOfFile: "\(staged)/resolv.conf", encoding: .utf8) == "nameserver 10.0.0.2\n")
        #expect((try? files.destinationOfSymbolicLink(atPath: "\(staged)/resolv.conf")) == nil, "copied as its content")
        #expect(try files.destinationOfSymbolicLink(atPath: "\(staged)/alternatives/editor") == "/usr/bin/vim.basic")
        #expect(!files.fileExists(atPath: "\(staged)/missing"))
        // The copy of a process that no longer runs is removed by the next one's.
        let dead = "\(parent)/mobvibe-sandbox-etc-999999-abcdef12"
        try files.createDirectory(atPath: dead, withIntermediateDirectories: false)
        _ = try #require(SandboxEtc.stage(entries: ["passwd"], from: etc, into: parent))
        #expect(!files.fileExists(atPath: dead))
        #expect(files.fileExists(atPath: staged), "this process's copy stays")
    }
}
