import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Subprocess
import SystemPackage
import WorkerCore

/// A session workspace that is the top level of a git work tree, seen through git's plumbing
/// so that the user's index, branches and commits are never touched.
///
/// A snapshot stages the whole work tree (untracked files included, ignored ones not) into a
/// private index file (`GIT_INDEX_FILE`, outside the workspace) and writes it as a tree; two
/// trees are then compared. The only trace left in the repository is the objects written for
/// the snapshots, which git's own garbage collection removes in time.
///
/// Each git command runs with a bounded time and a minimal environment (no job variables, no
/// terminal prompts, no optional locks that would race the job's own git commands).
struct GitWorkTree: Sendable {
    let git: String
    let directory: String
    let environment: [String: String]
    let timeout: Duration
    /// When commands are sandboxed, git runs in the sandbox too (``JobSandbox/toolArguments(writable:chdir:)``),
    /// with the work tree and `scratch` (the private index's folder) writable: the repository
    /// is the command's to configure.
    var sandbox: JobSandbox? = nil
    var scratch: String? = nil
    /// The user the job's command runs as (`JOB_USER`): git runs as them too, so that a program
    /// the repository's configuration names never runs as the worker (and git does not refuse a
    /// repository another user owns). `launcher` becomes the user before git starts.
    var user: JobUser? = nil
    var launcher: JobLauncher? = nil
    /// The job commands' limits: each git command runs in a control group and with the rlimits of
    /// its own, as an attempt does, since a program the repository names (a filter) runs in it;
    /// the group's removal then also stops whatever that program left running.
    var limits: JobLimitEnforcement = .none

    /// The most output kept from one git command (a diff of a huge change stays bounded).
    static let outputLimit = 64 << 20

    /// `nil` when `directory` is not the top level of a git work tree (not a repository at all,
    /// or a folder inside a larger one: its summary would describe the other repository).
    ///
    /// - Parameter environment: the base of the child environment (`PATH`, `HOME`, ...).
    static func open(
        directory: String, git: String, environment: [String: String], timeout: Duration, sandbox: JobSandbox? = nil, scratch: String? = nil,
        user: JobUser? = nil, launcher: JobLauncher? = nil, limits: JobLimitEnforcement = .none
    ) async throws(GitFailure) -> GitWorkTree? {
        var minimal: [String: String] = ["LANG": "C", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"]
        for name in ["PATH", "HOME", "TMPDIR"] { minimal[name] = environment[name] }
        if sandbox != nil { minimal["HOME"] = "/tmp"; minimal["TMPDIR"] = "/tmp" }
        if let user, sandbox == nil { minimal["HOME"] = user.home }
        let tree = GitWorkTree(
            git: git, directory: directory, environment: minimal, timeout: timeout, sandbox: sandbox, scratch: scratch, user: user, launcher: launcher,
            limits: limits)
        guard let inside = try? await tree.run(["rev-parse", "--is-inside-work-tree"]),
              String(decoding: inside, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "true"
        else { return nil }
        let top = String(decoding: try await tree.run(["rev-parse", "--show-toplevel"]), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        guard URL(fileURLWithPath: top).resolvingSymlinksInPath().path == resolved else { return nil }
        return tree
    }

    /// The work tree's content as a tree id, staged into `indexFile`.
    ///
    /// The private index starts as a copy of the repository's own, whose file stamps let git
    /// skip re-reading unchanged files; without one it starts empty (slower, same answer).
    func snapshot(indexFile: String) async throws(GitFailure) -> String {
        // Not FileManager's removal: the index's folder may be the command's (`JOB_USER`), and
        // FileManager removes a tree by path, which a process swapping a folder for a symlink
        // meanwhile turns into the removal of root's files elsewhere.
        TreeRemoval.remove(indexFile)
        // The git directory may be outside the work tree (`--separate-git-dir`, a linked worktree):
        // its index is as much the repository's.
        let lines = String(decoding: try await run(["rev-parse", "--absolute-git-dir", "--git-path", "index"]), as: UTF8.self)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        if lines.count == 2 {
            let source = lines[1].hasPrefix("/") ? lines[1] : URL(fileURLWithPath: directory).appendingPathComponent(lines[1]).path
            Self.copyIndex(from: source, inside: [directory, lines[0]], to: indexFile)
        }
        let withIndex = try await filtersOff().merging(["GIT_INDEX_FILE": indexFile]) { $1 }
        // `--ignore-errors`: what git cannot add (a folder holding a repository without a commit,
        // as an agent's `git init` in a subfolder leaves; an unreadable file) is left out, and the
        // rest is summed up; git then exits 1. Without it, one such folder lost the whole summary.
        _ = try await run(["add", "--all", "--ignore-errors", "--", "."], extra: withIndex, accepting: [0, 1])
        let tree = String(decoding: try await run(["write-tree"], extra: withIndex), as: UTF8.self)
        return tree.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Settings (as `GIT_CONFIG_*` variables, which hold any name a driver may have, `=` too)
    /// that turn off every filter driver the repository's configuration defines, for `git add`.
    ///
    /// A filter driver is a program the repository names, and `git add` runs it on every file
    /// its attributes match: the command of one turn could have git run anything during the next
    /// turn's "before" snapshot, outside the command's time and disk limits (a filter that wrote
    /// hundreds of MiB into the workspace passed `JOB_DISK_LIMIT_MB`), and, unconfined, as the
    /// worker. Off, each file is staged as the bytes it holds: both snapshots alike, so the
    /// summary still says what the turn changed (for a Git LFS file, its content rather than its
    /// pointer). Core programs (`core.fsmonitor`, hooks) are off in ``run(_:extra:accepting:)``.
    func filtersOff() async throws(GitFailure) -> [String: String] {
        let listed = try await run(["config", "-z", "--name-only", "--get-regexp", #"^filter\."#], accepting: [0, 1])
        var drivers = Set<String>()
        for entry in listed.split(separator: 0) {
            // `filter.<driver>.<setting>`; the driver's name may hold dots.
            let name = String(decoding: entry, as: UTF8.self)
            guard name.hasPrefix("filter."), let dot = name.lastIndex(of: "."), name.distance(from: name.startIndex, to: dot) > 7 else { continue }
            drivers.insert(String(name[name.index(name.startIndex, offsetBy: 7)..<dot]))
        }
        var variables: [String: String] = [:]
        var count = 0
        for driver in drivers.sorted() {
            for (setting, value) in [("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")] {
                variables["GIT_CONFIG_KEY_\(count)"] = "filter.\(driver).\(setting)"
                variables["GIT_CONFIG_VALUE_\(count)"] = value
                count += 1
            }
        }
        if count > 0 { variables["GIT_CONFIG_COUNT"] = "\(count)" }
        return variables
    }

    /// Copies the repository's index file `source` to `destination` if it is a regular file in
    /// one of `folders` (the work tree, the git directory git named); otherwise leaves
    /// `destination` absent (git then starts from an empty index: slower, and a tracked file
    /// that `.gitignore` matches is left out of both snapshots).
    ///
    /// The worker copies it itself (perhaps as root), and the command chose what is there: a
    /// FIFO would block `open` for good (no time-out covers this call), a symlink or a `.git`
    /// pointing elsewhere would have the worker read a file the command may not. Hence no
    /// following of a last symlink, no blocking open, regular files only, a bounded size, and
    /// a resolved path inside the work tree.
    static func copyIndex(from source: String, inside folders: [String], to destination: String) {
        let resolved = URL(fileURLWithPath: source).resolvingSymlinksInPath().path
        guard folders.contains(where: { resolved.hasPrefix(URL(fileURLWithPath: $0).resolvingSymlinksInPath().path + "/") }) else { return }
        let input = Glibc.open(resolved, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard input >= 0 else { return }
        defer { close(input) }
        var status = stat()
        guard fstat(input, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size <= Self.indexCopyLimit else { return }
        let output = Glibc.open(destination, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard output >= 0 else { return }
        var complete = false
        defer {
            close(output)
            if !complete { unlink(destination) }
        }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var copied = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count == 0 { break }
            guard count > 0, copied + count <= Self.indexCopyLimit else { return }
            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, count - written) }
                guard result > 0 else { return }
                written += result
            }
            copied += count
        }
        complete = true
    }

    /// The largest index file copied (a repository of about a million files).
    static let indexCopyLimit = 512 << 20

    /// What changed from tree `before` to tree `after`, renames detected.
    ///
    /// With the private `indexFile`: `diff-tree` opens the index, and the repository's own is
    /// the command's to replace (a FIFO there would hold each call for its whole time-out).
    func changes(from before: String, to after: String, indexFile: String) async throws(GitFailure) -> WorkspaceChanges {
        let withIndex = ["GIT_INDEX_FILE": indexFile]
        let names = try await run(["diff-tree", "-r", "-z", "-M", "--no-commit-id", "--name-status", before, after], extra: withIndex)
        let counts = try await run(["diff-tree", "-r", "-z", "-M", "--no-commit-id", "--numstat", before, after], extra: withIndex)
        return WorkspaceChanges(nameStatus: names, numstat: counts)
    }

    /// Runs `git -C directory arguments`, returning standard output when git exits with one of
    /// `accepting`.
    func run(_ arguments: [String], extra: [String: String] = [:], accepting: Set<Int32> = [0]) async throws(GitFailure) -> [UInt8] {
        // Settings that would run other programs or prompt are turned off for these commands.
        var fullArguments = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-C", directory] + arguments
        var variables: [Environment.Key: String] = [:]
        for (name, value) in environment.merging(extra, uniquingKeysWith: { $1 }) {
            if let key = Environment.Key(rawValue: name) { variables[key] = value }
        }
        let childEnvironment = Environment.custom(variables)
        var programPath = git
        if let sandbox {
            programPath = sandbox.bwrap
            fullArguments = sandbox.toolArguments(writable: [directory] + (scratch.map { [$0] } ?? []), chdir: directory) + [git] + fullArguments
        }
        let group: JobCgroup?
        do {
            group = try limits.cgroups?.group(named: "git-\(UUID().uuidString.prefix(12).lowercased())")
        } catch {
            throw .cannotStart(reason: "its control group: \(error)")
        }
        defer { group?.remove() }
        if user != nil || group != nil || !limits.rlimits.isEmpty {
            // Through worker-launch, a new single-threaded process: swift-subprocess changes the
            // user itself in a raw clone of the worker, where glibc's setuid can wait forever on
            // a lock another of the worker's threads held at the clone.
            guard let launcher else { throw .cannotStart(reason: "JOB_USER and the limits need worker-launch to run git") }
            let line = launcher.commandLine(join: group?.processFiles ?? [], rlimits: limits.rlimits, user: user, argv: [programPath] + fullArguments)
            programPath = line[0]
            fullArguments = Array(line.dropFirst())
        }
        let executable = Executable.path(FilePath(programPath))
        let (program, commandLine) = (executable, fullArguments)
        let limit = Self.outputLimit
        let timeout = self.timeout
        enum Race: Sendable {
            case finished(status: TerminationStatus, output: [UInt8], error: String)
            case timedOut
        }
        let outcome: Race
        do {
            outcome = try await withThrowingTaskGroup(of: Race.self) { race in
                race.addTask {
                    let result = try await Subprocess.run(
                        program,
                        arguments: Arguments(commandLine),
                        environment: childEnvironment,
                        output: .bytes(limit: limit),
                        error: .string(limit: 1 << 20)
                    )
                    return .finished(status: result.terminationStatus, output: result.standardOutput, error: result.standardError)
                }
                race.addTask {
                    try await Task.sleep(for: timeout)
                    return .timedOut
                }
                let first = try await race.next()!
                race.cancelAll()
                return first
            }
        } catch {
            throw .cannotStart(reason: "\(error)")
        }
        switch outcome {
        case .timedOut:
            throw .timedOut(arguments: arguments, after: timeout)
        case .finished(.exited(let code), let output, _) where accepting.contains(code):
            return output
        case .finished(let status, _, let stderr):
            throw .exited(arguments: arguments, status: "\(status)", stderr: stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}
