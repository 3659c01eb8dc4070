import Foundation
import Logging

/// Records what one job changes in its session workspace when that is a git work tree: a
/// snapshot before the command runs, another after it exits, and the difference.
///
/// Nothing here fails the job: a workspace that is no repository has no summary, and a git
/// command that fails or overruns its time is logged as a warning and the summary left out.
struct WorkspaceChangeTracker: Sendable {
    private let tree: GitWorkTree
    private let before: String
    private let indexFile: String

    /// Takes the "before" snapshot; `nil` when there is nothing to compare against later.
    ///
    /// - Parameter scratch: a directory outside the workspace for the private index file.
    static func begin(
        directory: String, git: String, environment: [String: String], timeout: Duration, scratch: String, sandbox: JobSandbox? = nil,
        user: JobUser? = nil, launcher: JobLauncher? = nil, limits: JobLimitEnforcement = .none, logger: Logger
    ) async -> WorkspaceChangeTracker? {
        let indexFile = URL(fileURLWithPath: scratch).appendingPathComponent("git-snapshot-index").path
        do {
            guard let tree = try await GitWorkTree.open(
                directory: directory, git: git, environment: environment, timeout: timeout, sandbox: sandbox, scratch: scratch, user: user, launcher: launcher,
                limits: limits)
            else {
                logger.debug("The session workspace is not the top of a git work tree: no change summary", metadata: ["workdir": .string(directory)])
                return nil
            }
            let before = try await tree.snapshot(indexFile: indexFile)
            return WorkspaceChangeTracker(tree: tree, before: before, indexFile: indexFile)
        } catch {
            logger.warning("Could not record the workspace before the job: its result gets no change summary", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Takes the "after" snapshot and compares.
    func finish(logger: Logger) async -> WorkspaceChanges? {
        // By descriptor (``TreeRemoval``): the index's folder may be the command's (``GitWorkTree/snapshot(indexFile:)``).
        defer { TreeRemoval.remove(indexFile) }
        do {
            let after = try await tree.snapshot(indexFile: indexFile)
            return try await tree.changes(from: before, to: after, indexFile: indexFile)
        } catch {
            logger.warning("Could not compare the workspace with its state before the job: its result gets no change summary", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
