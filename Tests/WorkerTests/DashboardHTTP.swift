import Foundation

/// A browser's side of the dashboard, spoken with curl (it never follows a redirect, and the
/// test keeps the cookies): status, headers and body of each answer.
struct DashboardHTTP {
    struct Answer {
        var status: Int
        /// Header names lower-cased; `Set-Cookie` lines in ``setCookies``.
        var headers: [String: String]
        var setCookies: [String]
        var body: String

        /// The hidden `csrf` field of the page.
        var csrf: String? {
            guard let range = body.range(of: #"name="csrf" value=""#) else { return nil }
            return String(body[range.upperBound...].prefix { $0 != "\"" })
        }
    }

    var base: String
    var cookies: [String: String] = [:]
    let folder: URL

    init(host: String = "127.0.0.1", port: Int, folder: URL) {
        base = "http://\(host):\(port)"
        self.folder = folder
    }

    /// Sends a request; with `form`, an urlencoded POST. Keeps the cookies it is given.
    mutating func send(_ method: String = "GET", _ path: String, form: [(String, String)]? = nil, headers: [String: String] = [:]) async throws -> Answer {
        var arguments = ["-sS", "-i", "--max-time", "15", "-X", method]
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        if !cookies.isEmpty {
            arguments += ["-H", "Cookie: " + cookies.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")]
        }
        if let form {
            let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
            let body = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
            arguments += ["-H", "Content-Type: application/x-www-form-urlencoded", "--data-raw", body]
        }
        arguments.append(base + path)
        let result = try await WorkerProcess.command(arguments, environment: [:], directory: folder, executable: URL(fileURLWithPath: "/usr/bin/curl"))
        guard result.status == 0 else { throw CurlFailure(description: "curl \(method) \(path): \(result.stderr)") }
        let answer = Self.parse(result.stdout)
        for line in answer.setCookies {
            let pair = line.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard pair.count == 2 else { continue }
            if pair[1].isEmpty || line.contains("Max-Age=0") { cookies[pair[0]] = nil } else { cookies[pair[0]] = pair[1] }
        }
        return answer
    }

    static func parse(_ text: String) -> Answer {
        let split = text.range(of: "\r\n\r\n") ?? text.range(of: "\n\n")
        let head = split.map { String(text[..<$0.lowerBound]) } ?? text
        let body = split.map { String(text[$0.upperBound...]) } ?? ""
        let lines = head.components(separatedBy: "\r\n").flatMap { $0.components(separatedBy: "\n") }
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var headers: [String: String] = [:]
        var setCookies: [String] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "set-cookie" { setCookies.append(value) } else { headers[name] = value }
        }
        return Answer(status: status, headers: headers, setCookies: setCookies, body: body)
    }

    struct CurlFailure: Error, CustomStringConvertible { var description: String }
}
