import Foundation

/// What a command has written to disk: the space its files take under some directories (the
/// workspace, and the sandbox's `/tmp` and home when `JOB_DISK_LIMIT_MB` puts them on disk),
/// measured by walking them, as `du` does.
enum DiskUsage {
    /// The bytes allocated to the files under `paths` (blocks, so a sparse file counts what it
    /// holds), not following symbolic links and not crossing into other file systems. A file
    /// with several links under the paths counts each time: an over-estimate, never an under-one.
    static func allocatedBytes(under paths: [String]) -> Int64 {
        var total: Int64 = 0
        for root in paths {
            var stack = [root]
            var rootDevice: dev_t?
            while let directory = stack.popLast() {
                guard let handle = openDirectory(directory) else {
                    // A folder the command made unreadable to the worker (`chmod 000`, same user)
                    // and that stays so: whatever it holds cannot be measured, so it is over.
                    if errno == EACCES { return .max }
                    continue
                }
                defer { closedir(handle) }
                var info = stat()
                if lstat(directory, &info) == 0 {
                    if rootDevice == nil { rootDevice = info.st_dev }
                    total += Int64(info.st_blocks) * 512
                }
                while let entry = readdir(handle) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    if name == "." || name == ".." { continue }
                    let path = directory + "/" + name
                    guard lstat(path, &info) == 0 else { continue }
                    if (info.st_mode & S_IFMT) == S_IFDIR {
                        if info.st_dev == rootDevice { stack.append(path) }
                    } else {
                        total += Int64(info.st_blocks) * 512
                    }
                }
            }
        }
        return total
    }

    /// `opendir`, again after giving the owner read and search rights back when the folder is
    /// the worker's user's (a command of that user took them away to hide what it wrote).
    private static func openDirectory(_ path: String) -> OpaquePointer? {
        if let handle = opendir(path) { return handle }
        guard errno == EACCES else { return nil }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_uid == geteuid(), chmod(path, (info.st_mode & 0o7777) | 0o500) == 0 else {
            errno = EACCES
            return nil
        }
        return opendir(path)
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

    /// The processes of process group `group` (a command run without control groups).
    static func processGroupMembers(_ group: pid_t) -> [pid_t] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return names.compactMap { name -> pid_t? in
            guard let pid = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let end = stat.lastIndex(of: ")")
            else { return nil }
            // After "pid (comm) ": state, ppid, pgrp.
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            return fields.count > 2 && pid_t(fields[2]) == group ? pid : nil
        }
    }
}
