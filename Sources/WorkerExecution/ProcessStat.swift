import Foundation

/// What `/proc/<pid>/stat` says of a process that the worker needs: its name, its parent and its
/// process group. Its fields follow the command name, which may hold spaces and parentheses, so
/// they are read after the last `)`.
struct ProcessStat {
    /// The name the kernel gives it (`comm`: its program's, at most 15 bytes).
    let name: Substring
    let parent: pid_t
    let group: pid_t

    /// `nil` when the process is gone (or `/proc` cannot be read).
    init?(pid: pid_t) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.range(of: ")", options: .backwards)
        else { return nil }
        name = stat[stat.index(after: open)..<close.lowerBound]
        // state, ppid, pgrp, ...
        let fields = stat[close.upperBound...].split(separator: " ")
        guard fields.count > 2, let parent = pid_t(fields[1]), let group = pid_t(fields[2]) else { return nil }
        self.parent = parent
        self.group = group
    }
}
