import Foundation
import Testing
@testable import WorkerService

/// `.env.example` documents exactly the variables the worker reads.
@Suite(".env.example")
struct EnvExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `NAME=` and `# NAME=` lines.
    static func documented() throws -> Set<String> {
        let text = try String(contentsOf: root.appendingPathComponent(".env.example"), encoding: .utf8)
        var names = Set<String>()
        for line in text.split(separator: "\n") {
            let trimmed = line.hasPrefix("# ") ? line.dropFirst(2) : line[...]
            if let match = trimmed.firstMatch(of: /^([A-Z][A-Z0-9_]*)=/) { names.insert(String(match.1)) }
        }
        return names
    }

    /// Every variable name the sources read: `values.x("NAME"...)`, `environment["NAME"]`, `getenv("NAME")`.
    static func read() throws -> Set<String> {
        var names = Set<String>()
        let sources = root.appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)!.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: /values\.\w+\(\s*"([A-Z][A-Z0-9_]*)"/) { names.insert(String(match.1)) }
            for match in text.matches(of: /(?:fallback|getenv\()\s*:?\s*"([A-Z][A-Z0-9_]*)"/) { names.insert(String(match.1)) }
        }
        return names
    }

    @Test("lists every variable the code reads, and nothing else")
    func matchesCode() throws {
        let documented = try Self.documented()
        let read = try Self.read()
        #expect(read.count > 25, "the source scan found the reads")
        #expect(read.subtracting(documented).isEmpty, "read but not in .env.example: \(read.subtracting(documented).sorted())")
        #expect(documented.subtracting(read).isEmpty, "in .env.example but never read: \(documented.subtracting(read).sorted())")
        let declared = Set(WorkerConfiguration.variables.map(\.name))
        #expect(declared.subtracting(documented).isEmpty, "declared but undocumented: \(declared.subtracting(documented).sorted())")
    }

    @Test("the example file itself is a valid configuration")
    func exampleIsValid() async throws {
        let configuration = try await WorkerConfiguration.load(environment: [:], environmentFile: Self.root.appendingPathComponent(".env.example").path)
        // No handler set: a copy of the file leaves JOB_COMMAND in charge (a JOB_HANDLER=echo here ran
        // the demo handler for a copy whose JOB_COMMAND was then set, silently).
        #expect(configuration.queues == ["default"] && configuration.handler == nil && configuration.command == nil)
    }
}
