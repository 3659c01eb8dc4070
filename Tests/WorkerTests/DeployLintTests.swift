import Foundation
import Testing

/// The Dockerfile (hadolint), the compose file and the Kubernetes manifests (syntax and shape).
@Suite("deployment files")
struct DeployLintTests {
    @Test("scripts/lint-deploy passes")
    func lint() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let output = try await TestPostgres.offThePool { try TestPostgres.run("/bin/bash", [root.appendingPathComponent("scripts/lint-deploy").path]) }
        #expect(output.contains(", 0 failed"))
        #expect(output.contains("hadolint"))
    }
}
