import Foundation

/// What one job changed in its session workspace (a git work tree), for the job's result:
/// the paths added, modified, deleted and renamed, and the diff stat, relative to the work
/// tree as it was when the job started (uncommitted and untracked files included).
public struct WorkspaceChanges: Sendable, Hashable {
    public struct Rename: Sendable, Hashable {
        public var from: String
        public var to: String
    }

    public var added: [String] = []
    public var modified: [String] = []
    public var deleted: [String] = []
    public var renamed: [Rename] = []
    /// Every path changed (a rename counts once), however many are listed.
    public var filesChanged = 0
    /// Lines added and removed; binary files count as changed files with no lines.
    public var insertions = 0
    public var deletions = 0
    /// Whether the path lists were cut at ``listLimit`` (the counts stay exact).
    public var truncated = false

    /// The most paths listed per kind, so a job that rewrites a whole tree (a clone, a vendored
    /// dependency) still gets a result the database can store.
    public static let listLimit = 1000

    public init(added: [String] = [], modified: [String] = [], deleted: [String] = [], renamed: [Rename] = [], filesChanged: Int = 0, insertions: Int = 0, deletions: Int = 0) {
        self.added = added
        self.modified = modified
        self.deleted = deleted
        self.renamed = renamed
        self.filesChanged = filesChanged
        self.insertions = insertions
        self.deletions = deletions
    }

    /// Reads `git diff-tree -r -z -M --name-status` and `--numstat` output.
    init(nameStatus: [UInt8], numstat: [UInt8]) {
        var fields = nameStatus.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }[...]
        while let status = fields.popFirst(), !status.isEmpty {
            guard let path = fields.popFirst() else { break }
            filesChanged += 1
            switch status.first {
            case "A": append(path, to: \.added)
            case "D": append(path, to: \.deleted)
            case "R", "C":
                guard let target = fields.popFirst() else { break }
                if renamed.count < Self.listLimit { renamed.append(Rename(from: path, to: target)) } else { truncated = true }
            default: append(path, to: \.modified) // M, T (type change)
            }
        }
        // numstat -z: "ins\tdel\tpath\0", or "ins\tdel\t\0from\0to\0" for a rename; "-" for binary files.
        var records = numstat.split(separator: 0, omittingEmptySubsequences: false)[...]
        while let record = records.popFirst(), !record.isEmpty {
            let parts = String(decoding: record, as: UTF8.self).split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            insertions += Int(parts[0]) ?? 0
            deletions += Int(parts[1]) ?? 0
            if parts[2].isEmpty { _ = records.popFirst(); _ = records.popFirst() }
        }
    }

    private mutating func append(_ path: String, to list: WritableKeyPath<WorkspaceChanges, [String]>) {
        if self[keyPath: list].count < Self.listLimit { self[keyPath: list].append(path) } else { truncated = true }
    }

    /// The summary as the JSON object stored under `"changes"`.
    public var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "added": added,
            "modified": modified,
            "deleted": deleted,
            "renamed": renamed.map { ["from": $0.from, "to": $0.to] },
            "filesChanged": filesChanged,
            "insertions": insertions,
            "deletions": deletions,
        ]
        if truncated { object["truncated"] = true }
        return object
    }

    /// The job's result with this summary added.
    ///
    /// A result that is a JSON object without a `changes` key gets one, added to its text so the
    /// command's own output is kept byte for byte. Anything else (an array, a string, a number,
    /// or an object that already has `changes`) is wrapped: `{"result": <as it was>, "changes": ...}`.
    public func attached(to result: String) -> String {
        let summary = (try? JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys, .withoutEscapingSlashes]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        let trimmed = result.trimmingCharacters(in: .whitespacesAndNewlines)
        if let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any], object["changes"] == nil,
           trimmed.hasSuffix("}") {
            let body = String(trimmed.dropLast())
            return body + (object.isEmpty ? "" : ",") + "\"changes\":" + summary + "}"
        }
        return "{\"result\":" + (trimmed.isEmpty ? "null" : trimmed) + ",\"changes\":" + summary + "}"
    }
}
