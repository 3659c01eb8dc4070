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
                guard let handle = opendir(directory) else { continue }
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
}
