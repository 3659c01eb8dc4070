#if canImport(Glibc)
import Glibc
#endif

/// Small POSIX socket helpers: the port check before start-up and the `healthcheck` probe.
/// (NIO would do, but these run before any event loop exists and must stay tiny.)
enum Socket {
    /// Resolves `host:port` to the first TCP address, calling `body` with it.
    static func withAddress<T>(host: String, port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t, Int32) throws -> T) throws -> T {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw SocketError.resolve(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(info) }
        return try body(info.pointee.ai_addr, info.pointee.ai_addrlen, info.pointee.ai_family)
    }

    /// Throws ``WorkerServiceError/portInUse(host:port:)`` when `host:port` cannot be bound.
    static func ensureAvailable(host: String, port: Int) throws {
        try withAddress(host: host, port: port) { address, length, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, address, length) != 0 {
                let code = errno
                if code == EADDRINUSE { throw WorkerServiceError.portInUse(host: host, port: port) }
                throw WorkerServiceError.cannotListen(host: host, port: port, reason: String(cString: strerror(code)))
            }
        }
    }
}

enum SocketError: Error, CustomStringConvertible {
    case resolve(host: String, reason: String)
    case connect(String)
    case timeout
    case malformedResponse

    var description: String {
        switch self {
        case .resolve(let host, let reason): "cannot resolve \(host): \(reason)"
        case .connect(let reason): "cannot connect: \(reason)"
        case .timeout: "timed out"
        case .malformedResponse: "the answer is not HTTP"
        }
    }
}
