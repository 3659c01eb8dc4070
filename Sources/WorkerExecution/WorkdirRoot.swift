import Foundation

/// The folder that holds every attempt's directory and session workspace (`JOB_WORKDIR_ROOT`),
/// made or checked before the first job.
///
/// The worker (often root) creates, chowns, writes and deletes inside it by path. Its default is
/// in `/tmp`, where any local user can create `/tmp/mobvibe-worker-jobs` first: whoever owns it, or
/// may write it, can swap its entries for symlinks between the worker's steps and have the worker
/// chown, write or delete files of their choosing. So it should be a real directory (no symlink
/// in its last part) of the worker's user or root, that no other user may write: group-writable
/// only for a group of the worker's (a Kubernetes volume with `fsGroup` is root's, mode 2775).
/// The worker refuses the default folder otherwise, and warns about one the operator chose.
public enum WorkdirRoot {
    /// Creates `path` (and its parents) if missing; returns what is wrong with it, or `nil`.
    /// - Parameter followingSymlink: judge what a symlink at `path` names (a folder the operator
    ///   chose) instead of refusing it.
    public static func problem(at path: String, followingSymlink: Bool = false) -> String? {
        var status = stat()
        let look = { (status: inout stat) in followingSymlink ? stat(path, &status) : lstat(path, &status) }
        if look(&status) != 0 {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            } catch {
                return "cannot be created: \(error.localizedDescription)"
            }
            guard look(&status) == 0 else { return "cannot be read after creating it (\(String(cString: strerror(errno))))" }
        }
        if (status.st_mode & S_IFMT) == S_IFLNK {
            return "is a symlink: name the directory it points to (a symlink there can be replaced by whoever may write its folder)"
        }
        guard (status.st_mode & S_IFMT) == S_IFDIR else { return "is not a directory" }
        if status.st_uid != geteuid(), status.st_uid != 0 {
            return "belongs to uid \(status.st_uid), not to the worker's uid \(geteuid()) or root: another user made it and could redirect the worker's file operations; remove it or choose another folder"
        }
        let mode = String(status.st_mode & 0o7777, radix: 8)
        if status.st_mode & 0o002 != 0 {
            return "may be written by every user (mode \(mode)): chmod o-w it"
        }
        if status.st_mode & 0o020 != 0, !workerGroups().contains(status.st_gid) {
            return "may be written by group \(status.st_gid), not one of the worker's (mode \(mode)): chmod g-w it, or give it a group of the worker's"
        }
        return nil
    }

    /// The worker's effective and supplementary group ids.
    static func workerGroups() -> Set<gid_t> {
        var groups = [gid_t](repeating: 0, count: Int(max(getgroups(0, nil), 0)))
        let count = getgroups(Int32(groups.count), &groups)
        return Set(groups.prefix(Int(max(count, 0)))).union([getegid()])
    }
}
