#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A minimal HTTP/1.1 `GET` for `worker healthcheck`, so a container image needs no curl.
public enum HealthProbe {
    /// The status code of `GET url`, within `timeout`.
    public static func status(of url: URL, timeout: Duration = .seconds(3)) throws -> Int {
        guard url.scheme == "http", let host = url.host else { throw SocketError.connect("only http:// URLs are supported: \(url)") }
        let port = url.port ?? 80
        let path = url.path.isEmpty ? "/" : url.path
        return try Socket.withAddress(host: host, port: port) { address, length, family in
            let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw SocketError.connect(String(cString: strerror(errno))) }
            defer { close(fd) }
            var interval = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000) % 1_000_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
            guard connect(fd, address, length) == 0 else { throw SocketError.connect(String(cString: strerror(errno))) }
            let request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\nUser-Agent: worker-healthcheck\r\n\r\n"
            let sent = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw SocketError.connect(String(cString: strerror(errno))) }
            var buffer = [UInt8](repeating: 0, count: 512)
            var received = 0
            while received < 16 {
                let count = recv(fd, &buffer[received], buffer.count - received, 0)
                if count < 0 && errno == EINTR { continue }
                if count < 0 { throw errno == EAGAIN ? SocketError.timeout : SocketError.connect(String(cString: strerror(errno))) }
                if count == 0 { break }
                received += count
            }
            // "HTTP/1.1 200 OK"
            let head = String(decoding: buffer[0..<received], as: UTF8.self)
            let parts = head.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else { throw SocketError.malformedResponse }
            return code
        }
    }
}
