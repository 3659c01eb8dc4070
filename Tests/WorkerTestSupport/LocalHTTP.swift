import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A TCP port on 127.0.0.1 that nothing listens on, kept for the caller until the test process
/// ends: its server (the worker, PostgreSQL, an in-process health server) binds it with
/// `SO_REUSEADDR`, as they all do, and nothing else can take it meanwhile.
///
/// Checking that a port binds and handing it out was not enough: between the check and the
/// server's bind, the port could be given to an outgoing connection of the suite or of the
/// machine (a CI host's ephemeral range can cover any port), and the worker stopped with
/// "HEALTH_CHECK_PORT ... is already in use". So each port stays bound by a socket of this
/// process, with `SO_REUSEADDR` and never listening: Linux then gives it to no `connect()` and
/// no `bind()` to port 0, while a server's `SO_REUSEADDR` bind and `listen()` still succeed.
public func freeLocalPort() throws -> Int {
    // Below Linux's default ephemeral range (32768-60999), from a random start, each port once
    // per process, and only if it binds now without sharing (nothing holds it, not even a
    // connection in TIME_WAIT).
    for _ in 0..<portRange.count {
        let port = portRange.lowerBound + (portStart + nextPort.add(1, ordering: .relaxed).oldValue) % portRange.count
        guard let probe = boundSocket(port, reuseAddress: false) else { continue }
        close(probe)
        guard let holder = boundSocket(port, reuseAddress: true) else { continue }
        heldPorts.withLock { $0.append(holder) }
        return port
    }
    preconditionFailure("no free port in \(portRange)")
}

private let portRange = 20_000..<32_000
private let portStart = Int.random(in: 0..<12_000)
private let nextPort = Atomic<Int>(0)
/// The sockets that keep handed-out ports, open until the process exits.
private let heldPorts = Mutex<[Int32]>([])

/// A socket bound to `port` on 127.0.0.1 (not listening), or `nil` if the port cannot be bound now.
private func boundSocket(_ port: Int, reuseAddress: Bool) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    if reuseAddress {
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } } == 0
    if !bound { close(fd) }
    return bound ? fd : nil
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
