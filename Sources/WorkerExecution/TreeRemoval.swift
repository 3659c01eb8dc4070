import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Removes a folder a job's command wrote (its working directory, an idle session workspace),
/// including folders the command made read-only.
///
/// Tools do make them: Go's module cache is read-only folders (`go mod download`), and so is
/// anything a `chmod -R a-w` left. Root removes them anyway; a worker that is not root (the
/// Docker image's `nonroot`) cannot remove a file in a folder it may not write, so before, such
/// a folder stayed on disk for good, one per job. When the first removal fails, the folders
/// the worker owns are given back their owner's rights and the removal is tried once more.
enum TreeRemoval {
    /// Removes `path` and everything below it. Returns the error of the last try when something
    /// is left.
    @discardableResult
    static func remove(_ path: String) -> (any Error)? {
        do {
            try FileManager.default.removeItem(atPath: path)
            return nil
        } catch {
            guard FileManager.default.fileExists(atPath: path) else { return nil }
        }
        makeOwnerWritable(path, depth: 0)
        do {
            try FileManager.default.removeItem(atPath: path)
            return nil
        } catch {
            return FileManager.default.fileExists(atPath: path) ? error : nil
        }
    }

    /// Deeper folders than this are left as they are (a bound on the recursion).
    static let maximumDepth = 512

    /// Adds `u+rwx` to the folder at `path` and to every folder below it, through descriptors
    /// opened without following a symlink: a link the command left is never followed to a
    /// folder elsewhere.
    private static func makeOwnerWritable(_ path: String, depth: Int) {
        guard depth <= maximumDepth else { return }
        let folder = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if folder < 0 {
            // Perhaps not readable yet: a folder without `r` (or `x`) cannot be opened for
            // reading; `O_PATH` gives a descriptor fchmod cannot use, so try the mode by path,
            // after checking by lstat that it is a folder and not a link.
            var status = stat()
            guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR, status.st_uid == geteuid() else { return }
            guard chmod(path, (status.st_mode & 0o7777) | 0o700) == 0 else { return }
            let reopened = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard reopened >= 0 else { return }
            walk(reopened, path: path, depth: depth)
            return
        }
        var status = stat()
        if fstat(folder, &status) == 0, status.st_uid == geteuid(), status.st_mode & 0o700 != 0o700 {
            _ = fchmod(folder, (status.st_mode & 0o7777) | 0o700)
        }
        walk(folder, path: path, depth: depth)
    }

    /// Goes on into the folders below the open folder `folder` (closed here).
    private static func walk(_ folder: Int32, path: String, depth: Int) {
        guard let stream = fdopendir(folder) else {
            close(folder)
            return
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            guard name != ".", name != ".." else { continue }
            var status = stat()
            guard fstatat(folder, name, &status, AT_SYMLINK_NOFOLLOW) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { continue }
            makeOwnerWritable("\(path)/\(name)", depth: depth + 1)
        }
    }
}
