import Foundation

/// What a command has written to disk: the space its files take under some directories (the
/// workspace, and the sandbox's `/tmp` and home when `JOB_DISK_LIMIT_MB` puts them on disk),
/// measured by walking them, as `du` does.
enum DiskUsage {
    /// The bytes allocated to the files under `paths` (blocks, so a sparse file counts what it
    /// holds), not following symbolic links and not crossing into other file systems. A file
    /// with several links under the paths counts each time: an over-estimate, never an under-one.
    ///
    /// Walked by descriptor (each folder opened relative to its parent's, `O_NOFOLLOW`): the
    /// tree is the command's, and a process of it still running may swap a folder for a symlink
    /// between two steps of a walk by path. `Int64.max` (over any limit) when the tree cannot be
    /// measured: a folder that stays unreadable, a workspace that is gone or is a symlink now,
    /// or more than ``maximumDepth`` folders deep.
    static func allocatedBytes(under paths: [String]) -> Int64 {
        var total: Int64 = 0
        for root in paths {
            // Each root exists for the whole attempt: one missing, or a symlink now, is one the
            // command moved away (its data then unmeasured) or replaced.
            let descriptor = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { return .max }
            var info = stat()
            guard fstat(descriptor, &info) == 0 else {
                close(descriptor)
                return .max
            }
            total += Int64(info.st_blocks) * 512
            guard let measured = walk(descriptor, device: info.st_dev) else { return .max }
            total += measured
        }
        return total
    }

    /// How deep a tree is walked; a deeper one counts as over the limit (one descriptor a level).
    static let maximumDepth = 256

    /// The blocks below the folder `root` (closed on return), depth first, one open descriptor
    /// per level; `nil` when part of it cannot be read.
    private static func walk(_ root: Int32, device: dev_t) -> Int64? {
        var total: Int64 = 0
        var frames: [(descriptor: Int32, folders: [[CChar]])] = []
        defer { for frame in frames { close(frame.descriptor) } }
        guard let first = scan(root, device: device, total: &total) else {
            close(root)
            return nil
        }
        frames.append((root, first))
        while let top = frames.indices.last {
            guard let name = frames[top].folders.popLast() else {
                close(frames[top].descriptor)
                frames.removeLast()
                continue
            }
            guard frames.count < maximumDepth else { return nil }
            var child = openat(frames[top].descriptor, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child < 0, errno == EACCES { child = reopenAfterGrantingOwner(name, in: frames[top].descriptor) }
            if child < 0 {
                // Gone, or swapped for a symlink or a file since the scan: nothing to follow.
                if errno == ENOENT || errno == ELOOP || errno == ENOTDIR { continue }
                return nil
            }
            guard let folders = scan(child, device: device, total: &total) else {
                close(child)
                return nil
            }
            frames.append((child, folders))
        }
        return total
    }

    /// Adds the blocks of the entries of the folder `descriptor` (files, and folders' own) to
    /// `total`; returns the names of its folders on `device` (`nil`: it cannot be listed, or an
    /// entry cannot be looked at).
    ///
    /// Names are kept as the bytes they are (NUL-terminated): decoded as UTF-8, a name that is
    /// not (`hide\xFF`) became another name, its look-up failed, and what it held went uncounted.
    /// A folder that may be listed but not searched (`chmod 0400`: every look-up inside it
    /// fails) gets its owner's search right back when it is the worker's user's; otherwise it
    /// cannot be measured. Before, both were skipped without a word, under any limit.
    private static func scan(_ descriptor: Int32, device: dev_t, total: inout Int64) -> [[CChar]]? {
        let copy = dup(descriptor)
        guard copy >= 0 else { return nil }
        guard let handle = fdopendir(copy) else {
            close(copy)
            return nil
        }
        defer { closedir(handle) }
        var folders: [[CChar]] = []
        var info = stat()
        var searchGranted = false
        while let entry = readdir(handle) {
            let name = Self.name(of: entry)
            if Self.isDotOrDotDot(name) { continue }
            var looked = fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0
            if !looked, errno == EACCES, !searchGranted {
                searchGranted = true
                guard grantOwnerSearch(descriptor) else { return nil }
                looked = fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0
            }
            if !looked {
                // Deleted since it was listed: nothing to count.
                if errno == ENOENT { continue }
                return nil
            }
            total += Int64(info.st_blocks) * 512
            if (info.st_mode & S_IFMT) == S_IFDIR, info.st_dev == device { folders.append(name) }
        }
        return folders
    }

    /// The name of a directory entry, NUL-terminated, byte for byte.
    static func name(of entry: UnsafeMutablePointer<dirent>) -> [CChar] {
        withUnsafeBytes(of: entry.pointee.d_name) { raw in
            raw.prefix { $0 != 0 }.map { CChar(bitPattern: $0) } + [0]
        }
    }

    /// Whether `name` (NUL-terminated) is `.` or `..`.
    static func isDotOrDotDot(_ name: [CChar]) -> Bool {
        let dot = CChar(bitPattern: UInt8(ascii: "."))
        return (name.count == 2 && name[0] == dot) || (name.count == 3 && name[0] == dot && name[1] == dot)
    }

    /// Gives the owner of the open folder `descriptor` its search right back when that is the
    /// worker's user; whether the folder may now be searched.
    private static func grantOwnerSearch(_ descriptor: Int32) -> Bool {
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_uid == geteuid() else { return false }
        return fchmod(descriptor, (info.st_mode & 0o7777) | 0o500) == 0
    }

    /// Linux's `O_PATH` (Glibc's module does not export it): a descriptor that only names a file.
    private static let openPath: Int32 = 0o10000000

    /// Opens the folder `name` after giving its owner read and search rights back, when it is the
    /// worker's user's (a command of that user took them away, `chmod 000`, to hide what it
    /// wrote). Through a descriptor of that very folder (`O_PATH`, not followed if a symlink):
    /// no path is resolved again, so a swapped name changes no other file's mode.
    static func reopenAfterGrantingOwner(_ name: [CChar], in parent: Int32) -> Int32 {
        let handle = openat(parent, name, openPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard handle >= 0 else { return -1 }
        defer { close(handle) }
        var info = stat()
        guard fstat(handle, &info) == 0, info.st_uid == geteuid(), chmod("/proc/self/fd/\(handle)", (info.st_mode & 0o7777) | 0o500) == 0 else {
            errno = EACCES
            return -1
        }
        return openat(handle, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    }

    /// The bytes of files that `pids` hold open after deleting them, on the file systems of
    /// `paths`: they take space until closed, and no walk sees them (five files just under the
    /// limit each, written and deleted while open, went unnoticed).
    static func deletedOpenBytes(of pids: [pid_t], onFileSystemsOf paths: [String]) -> Int64 {
        var devices = Set<dev_t>()
        var info = stat()
        for path in paths where lstat(path, &info) == 0 { devices.insert(info.st_dev) }
        var seen = Set<[UInt64]>()
        var total: Int64 = 0
        for pid in pids {
            let folder = "/proc/\(pid)/fd"
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { continue }
            for name in names {
                let link = folder + "/" + name
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link), target.hasSuffix(" (deleted)"),
                      stat(link, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, devices.contains(info.st_dev),
                      seen.insert([UInt64(info.st_dev), UInt64(info.st_ino)]).inserted
                else { continue }
                total += Int64(info.st_blocks) * 512
            }
        }
        return total
    }

    /// The processes of a command run without control groups: `pid` and its descendants (in the
    /// sandbox, bwrap's new session puts the command in a process group of its own), and the
    /// members of process group `pid` (a daemon that left the tree but not the group).
    static func commandProcesses(_ pid: pid_t) -> [pid_t] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var children: [pid_t: [pid_t]] = [:]
        var found = Set([pid])
        for name in names {
            guard let process = pid_t(name), let stat = ProcessStat(pid: process) else { continue }
            children[stat.parent, default: []].append(process)
            if stat.group == pid { found.insert(process) }
        }
        var queue = Array(found)
        while let next = queue.popLast() {
            for child in children[next] ?? [] where found.insert(child).inserted { queue.append(child) }
        }
        return Array(found)
    }
}
