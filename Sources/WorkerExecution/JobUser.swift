import Foundation

/// The user a root worker runs commands as (`JOB_USER`): its ids, groups and home, looked up once
/// at start-up.
///
/// Without a sandbox, a command of the worker's own user could read everything the worker can
/// (its files, its database); as root, everything on the machine. A user of their own keeps the
/// command to what that user may touch; the worker makes each attempt's directory theirs.
public struct JobUser: Sendable, Hashable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    /// Supplementary groups (from the group database, as a login would get them).
    public var groups: [gid_t]
    public var home: String

    public init(name: String, uid: uid_t, gid: gid_t, groups: [gid_t], home: String) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home
    }

    /// Looks `user` up by name, or by number (`UID` or `UID:GID`, for a user the image's
    /// `/etc/passwd` does not list).
    public static func resolve(_ user: String) -> JobUser? {
        if let entry = getpwnam(user) {
            return fromEntry(entry.pointee, name: user)
        }
        let parts = user.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let uid = uid_t(parts[0]) else { return nil }
        if parts.count == 1, let entry = getpwuid(uid) {
            return fromEntry(entry.pointee, name: String(cString: entry.pointee.pw_name))
        }
        guard let gid = parts.count == 2 ? gid_t(parts[1]) : gid_t(exactly: uid) else { return nil }
        return JobUser(name: user, uid: uid, gid: gid, groups: [], home: "/")
    }

    private static func fromEntry(_ entry: passwd, name: String) -> JobUser {
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(entry.pw_name, entry.pw_gid, &groups, &count) == -1 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(entry.pw_name, entry.pw_gid, &groups, &count)
        }
        return JobUser(
            name: name, uid: entry.pw_uid, gid: entry.pw_gid, groups: Array(groups.prefix(Int(max(count, 0)))),
            home: String(cString: entry.pw_dir))
    }

    var launcherArgument: String {
        "\(uid):\(gid)" + (groups.isEmpty ? "" : ":" + groups.map(String.init).joined(separator: ","))
    }

    /// Hands `path` to this user (not recursively): an attempt's directories, its payload file.
    func own(_ path: String) throws {
        guard chown(path, uid, gid) == 0 else {
            throw CommandFailure.workdir(path: path, reason: "cannot hand it to JOB_USER \(name): \(String(cString: strerror(errno)))")
        }
    }
}
