import Foundation

/// The `/etc` a sandboxed command sees: a copy, made once per worker process, of the
/// ``JobSandbox/etcEntries`` this host has, holding only what every user of the host may read.
///
/// One read-only mount of the copy instead of one per entry: each entry was a bind and a
/// read-only remount, about 0.2 ms of every command's start (`worker bench sandbox`). And only
/// world-readable files: a worker running as root maps its sandbox's root to the host's, so a
/// bound `/etc/ssl` showed the command `/etc/ssl/private` (the host's TLS keys) as its own.
/// The copy is what the entries held at the worker's start (a `resolv.conf` changed later is not
/// seen until the next start).
enum SandboxEtc {
    /// The empty file in the copy (its /etc/.mobvibe-empty) mounted over masked /proc entries.
    static let emptyFileName = ".mobvibe-empty"

    /// The copy of this process (`nil`: it could not be made; then the entries are bound one by one).
    static let staged: String? = stage(entries: JobSandbox.etcEntries, from: "/etc", into: FileManager.default.temporaryDirectory.path)

    /// Copies `entries` of `source` into a new `mobvibe-sandbox-etc-<pid>-...` directory under
    /// `parent`, skipping what is not world-readable; removes the copies of processes that no
    /// longer run. Returns the copy's path.
    static func stage(entries: [String], from source: String, into parent: String) -> String? {
        let files = FileManager.default
        for name in (try? files.contentsOfDirectory(atPath: parent)) ?? [] where name.hasPrefix("mobvibe-sandbox-etc-") {
            // Only this user's own copies, and by descriptor (``TreeRemoval``): anyone may make
            // a folder of that name in /tmp, and FileManager's removal by path, racing a swap of
            // a folder for a symlink, removed what the link pointed to with the worker's rights.
            var status = stat()
            guard let pid = pid_t(name.dropFirst("mobvibe-sandbox-etc-".count).prefix { $0 != "-" }),
                  kill(pid, 0) == -1, errno == ESRCH,
                  lstat("\(parent)/\(name)", &status) == 0, status.st_uid == geteuid(), (status.st_mode & S_IFMT) == S_IFDIR
            else { continue }
            TreeRemoval.remove("\(parent)/\(name)")
        }
        let target = "\(parent)/mobvibe-sandbox-etc-\(getpid())-\(UUID().uuidString.prefix(8).lowercased())"
        do {
            try files.createDirectory(atPath: target, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
            // An entry that is a link (resolv.conf into /run, on systemd hosts) is copied as what it
            // points to, which the sandbox may not have; links inside directories stay links.
            for entry in entries { try copy("\(source)/\(entry)", to: "\(target)/\(entry)", followingLink: true) }
            // An empty file to mount over the /proc entries the sandbox masks.
            guard files.createFile(atPath: "\(target)/\(emptyFileName)", contents: Data(), attributes: [.posixPermissions: 0o444]) else {
                throw CocoaError(.fileWriteUnknown)
            }
            return target
        } catch {
            try? files.removeItem(atPath: target)
            return nil
        }
    }

    /// Copies `path` (a file, a symbolic link as a link, or a directory, recursively) when
    /// everyone may read it (and search it, for a directory); anything else is left out.
    private static func copy(_ path: String, to destination: String, followingLink: Bool = false) throws {
        var info = stat()
        guard (followingLink ? stat(path, &info) : lstat(path, &info)) == 0 else { return }
        let files = FileManager.default
        switch info.st_mode & S_IFMT {
        case S_IFLNK:
            // Inside, a link resolves against the sandbox's own tree (/usr is there).
            try files.createSymbolicLink(atPath: destination, withDestinationPath: try files.destinationOfSymbolicLink(atPath: path))
        case S_IFDIR:
            guard info.st_mode & 0o005 == 0o005 else { return }
            try files.createDirectory(atPath: destination, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
            for name in try files.contentsOfDirectory(atPath: path) { try copy("\(path)/\(name)", to: "\(destination)/\(name)") }
        case S_IFREG:
            guard info.st_mode & 0o004 != 0 else { return }
            guard let contents = files.contents(atPath: path), files.createFile(atPath: destination, contents: contents) else {
                throw CocoaError(.fileWriteUnknown)
            }
            chmod(destination, 0o644)
        default:
            return
        }
    }
}
