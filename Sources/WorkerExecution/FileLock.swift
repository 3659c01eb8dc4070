import Foundation
import Synchronization

/// An exclusive `flock` on a file, held until ``release()`` (or until the process dies: the
/// kernel drops a dead process's `flock`s, so a crashed worker never leaves a workspace locked).
///
/// The file also holds a one-line note saying who holds it (host, pid, worker), so that a
/// process that finds it locked can say by whom. The descriptor is opened with `O_CLOEXEC`:
/// a job's command (and anything it leaves running) never inherits the lock.
public final class FileLock: Sendable {
    /// Why a lock could not be taken.
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// Another open file (this process or another, on this host or one sharing the storage) holds it.
        case held(path: String, holder: String)
        /// The file cannot be created, opened or locked.
        case system(path: String, operation: String, errno: Int32)

        public var description: String {
            switch self {
            case .held(let path, let holder):
                "\(path) is locked by \(holder.isEmpty ? "another process (it wrote no holder)" : holder)"
            case .system(let path, let operation, let code):
                "cannot \(operation) \(path): \(String(cString: strerror(code)))"
            }
        }
    }

    public let path: String
    /// The note the previous holder left in the file, read before this holder replaced it:
    /// who last held the lock (``OrphanedCommand`` reads what that holder left running).
    public let previousNote: String
    /// When the file was last written before this holder wrote its note (its previous holder's
    /// last write: a turn's end touches it), read under the lock.
    public let previousModification: Date
    /// The descriptor while held; -1 once released.
    private let descriptor: Mutex<Int32>

    private init(path: String, descriptor: Int32, previousNote: String, previousModification: Date) {
        self.path = path
        self.descriptor = Mutex(descriptor)
        self.previousNote = previousNote
        self.previousModification = previousModification
    }

    deinit { release() }

    /// Takes the lock without waiting, and writes `holder` into the file.
    ///
    /// A lock file may be unlinked by the workspace sweeper while another process waits to open
    /// it; after locking, the file is checked to still be the one at `path` (else the lock is on
    /// an orphan and it tries again), so two processes never both believe they hold `path`.
    ///
    /// - Throws: ``Failure/held(path:holder:)`` when another open file holds it.
    public static func acquire(path: String, holder: String) throws(Failure) -> FileLock {
        for _ in 0..<8 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .system(path: path, operation: "open", errno: errno) }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                let note = readNote(fd)
                close(fd)
                if code == EWOULDBLOCK { throw .held(path: path, holder: note) }
                throw .system(path: path, operation: "lock", errno: code)
            }
            var opened = stat()
            var linked = stat()
            guard fstat(fd, &opened) == 0 else {
                let code = errno
                close(fd)
                throw .system(path: path, operation: "stat", errno: code)
            }
            if stat(path, &linked) != 0 || linked.st_ino != opened.st_ino || linked.st_dev != opened.st_dev {
                close(fd)
                continue
            }
            let previous = readNote(fd)
            let modified = Date(timeIntervalSince1970: Double(opened.st_mtim.tv_sec) + Double(opened.st_mtim.tv_nsec) / 1e9)
            write(note: holder, to: fd)
            return FileLock(path: path, descriptor: fd, previousNote: previous, previousModification: modified)
        }
        throw .system(path: path, operation: "lock (it kept being replaced)", errno: EAGAIN)
    }

    /// ``acquire(path:holder:)``, trying again for up to `patience` while the lock is held.
    ///
    /// A lock this process has just released can stay held for a moment: a child process being
    /// started elsewhere in the process shares every descriptor between its fork and its exec
    /// (close-on-exec ones included), and so the open file the lock belongs to. A holder that
    /// really works in the workspace holds it far longer than `patience`.
    public static func acquire(path: String, holder: String, patience: Duration) async throws(Failure) -> FileLock {
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                return try acquire(path: path, holder: holder)
            } catch {
                guard case .held = error, ContinuousClock.now < deadline, !Task.isCancelled else { throw error }
                try? await Task.sleep(for: .milliseconds(25))
            }
        }
    }

    /// The holder's note, without locking (for messages).
    public static func holder(at path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        return readNote(fd)
    }

    private static func readNote(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return "" }
        return String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func write(note: String, to fd: Int32) {
        let line = Array((note + "\n").utf8)
        _ = ftruncate(fd, 0)
        _ = line.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Replaces the holder's note (while held), e.g. to add what the holder started.
    public func rewriteNote(_ note: String) {
        descriptor.withLock { fd in
            if fd >= 0 { Self.write(note: note, to: fd) }
        }
    }

    /// Sets the file's modification time to now: the lock file's mtime is a workspace's
    /// last use, which the sweeper reads.
    public func touch() {
        descriptor.withLock { fd in
            if fd >= 0 { _ = futimens(fd, nil) }
        }
    }

    /// Whether the descriptor is closed when a child program starts (for tests): otherwise a
    /// command, and whatever it leaves running, would keep the workspace locked.
    var closesOnExec: Bool {
        descriptor.withLock { fd in fd >= 0 && fcntl(fd, F_GETFD) & FD_CLOEXEC != 0 }
    }

    /// Releases the lock (closing the file drops the `flock`); later calls do nothing.
    public func release() {
        descriptor.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }
}
