import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Removes a folder a job's command wrote (its working directory, an idle session workspace),
/// including folders the command made read-only or named with bytes that are not UTF-8.
///
/// Tools do make read-only folders: Go's module cache is read-only folders (`go mod download`),
/// and so is anything a `chmod -R a-w` left. Root removes them anyway; a worker that is not root
/// (the Docker image's `nonroot`) cannot remove a file in a folder it may not write, so before,
/// such a folder stayed on disk for good, one per job. Here each folder the worker's user owns
/// is given its owner's rights back before its entries are removed.
///
/// The walk goes by descriptor, each folder opened relative to its parent without following a
/// symbolic link (a link the command left is removed, never followed), and names stay the bytes
/// they are: a name decoded as UTF-8 (`ro\xFF`) would be another name, and its folder stayed.
enum TreeRemoval {
    /// Why something under the folder was left.
    struct Failure: Error, CustomStringConvertible {
        let operation: String
        let code: Int32

        var description: String { "could not \(operation): \(String(cString: strerror(code)))" }
    }

    /// Removes `path` and everything below it; the first failure when something is left.
    @discardableResult
    static func remove(_ path: String) -> Failure? {
        let url = URL(fileURLWithPath: path)
        let parent = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parent >= 0 else { return errno == ENOENT ? nil : Failure(operation: "open the folder holding \(path)", code: errno) }
        defer { close(parent) }
        return removeEntry(Array(url.lastPathComponent.utf8CString), in: parent, depth: 0, top: nil)
    }

    /// Folders deeper than this are moved up to the top folder, and removed from there (a bound
    /// on the recursion and on open descriptors, never on what is removed: `mkdir d && cd d`
    /// 600 times, which `rm -rf` removes, was left for good, one such folder a job, and a session
    /// workspace's sweep failed on it every round).
    static let maximumDepth = 512

    /// Removes the entry `name` (NUL-terminated) of the open folder `parent`, and what it holds;
    /// `top` is the folder being removed (`nil` for that folder itself).
    private static func removeEntry(_ name: [CChar], in parent: Int32, depth: Int, top: Int32?) -> Failure? {
        var info = stat()
        guard fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            return errno == ENOENT ? nil : Failure(operation: "look at an entry", code: errno)
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            return unlinkat(parent, name, 0) == 0 || errno == ENOENT ? nil : Failure(operation: "remove a file", code: errno)
        }
        if depth >= maximumDepth, let top {
            // Up to the top folder, whose walk takes it next.
            let moved = Array(".mobvibe-deep-\(UUID().uuidString)".utf8CString)
            return renameat(parent, name, top, moved) == 0 ? nil : Failure(operation: "move a folder \(maximumDepth) deep up", code: errno)
        }
        var folder = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if folder < 0, errno == EACCES { folder = DiskUsage.reopenAfterGrantingOwner(name, in: parent) }
        guard folder >= 0 else { return errno == ENOENT ? nil : Failure(operation: "open a folder", code: errno) }
        var failure: Failure?
        var status = stat()
        // Write and search rights, to remove its entries (the worker's own folders only).
        if fstat(folder, &status) == 0, status.st_uid == geteuid(), status.st_mode & 0o700 != 0o700 {
            _ = fchmod(folder, (status.st_mode & 0o7777) | 0o700)
        }
        // The top folder is walked again while folders moved up from below land in it.
        var rounds = 0
        repeat {
            let found = entries(of: folder)
            if found.isEmpty { break }
            for entry in found {
                if let failed = removeEntry(entry, in: folder, depth: depth + 1, top: top ?? folder), failure == nil { failure = failed }
            }
            rounds += 1
        } while top == nil && failure == nil && rounds < 100_000
        close(folder)
        if unlinkat(parent, name, AT_REMOVEDIR) != 0, errno != ENOENT, failure == nil {
            failure = Failure(operation: "remove a folder", code: errno)
        }
        return failure
    }

    /// The names in the open folder `folder` (all read before any is removed).
    private static func entries(of folder: Int32) -> [[CChar]] {
        let copy = dup(folder)
        guard copy >= 0 else { return [] }
        guard let stream = fdopendir(copy) else {
            close(copy)
            return []
        }
        defer { closedir(stream) }
        // From the start: the copy shares the folder's offset, at the end after an earlier walk.
        rewinddir(stream)
        var names: [[CChar]] = []
        while let entry = readdir(stream) {
            let name = DiskUsage.name(of: entry)
            if !DiskUsage.isDotOrDotDot(name) { names.append(name) }
        }
        return names
    }
}
