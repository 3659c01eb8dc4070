import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A TCP port on 127.0.0.1 that nothing listens on right now (for in-process servers on real ports).
public func freeLocalPort() throws -> Int {
    // Below Linux's ephemeral range (32768-60999 by default): a port of that range, free when
    // asked, could be given to one of the suite's outgoing connections (PostgreSQL clients,
    // curl) before the test's server bound it ("already in use", a rare failure in full runs).
    // Each port is handed out once per process, from a random start, and only if it binds now.
    for _ in 0..<portRange.count {
        let port = portRange.lowerBound + (portStart + nextPort.add(1, ordering: .relaxed).oldValue) % portRange.count
        if canBind(port) { return port }
    }
    preconditionFailure("no free port in \(portRange)")
}

private let portRange = 20_000..<32_000
private let portStart = Int.random(in: 0..<12_000)
private let nextPort = Atomic<Int>(0)

/// Whether a socket can bind `port` on 127.0.0.1 now.
private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } } == 0
}

/// A `URLSession` that opens up to `connections` connections to one host, so that concurrent
/// requests really are concurrent (the shared session queues them on a handful).
public func makeConcurrentSession(connections: Int) -> URLSession {
    let configuration = URLSessionConfiguration.ephemeral
    configuration.httpMaximumConnectionsPerHost = connections
    configuration.timeoutIntervalForRequest = 20
    return URLSession(configuration: configuration)
}

/// `GET http://127.0.0.1:<port><path>`: the status and the body as text.
public func localGET(port: Int, path: String, session: URLSession = .shared) async throws -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.timeoutInterval = 20
    let (data, response) = try await session.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
public func pollUntil(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return false
}
