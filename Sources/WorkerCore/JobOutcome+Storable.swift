import Foundation

extension JobOutcome {
    /// The most bytes of result JSON the worker stores for one job: PostgreSQL's `jsonb` takes
    /// about 255 MB and SQLite a billion bytes, so this bound fits both with room to spare. A
    /// longer result is stored in its ``storable()`` form (cut, with a marker).
    public static let maximumResultBytes = 128 << 20
    /// The most bytes of an error message stored as `last_error`.
    public static let maximumErrorBytes = 64 << 10
    /// How much of an oversized result is kept (as text) beside the truncation marker.
    static let truncatedResultHeadBytes = 1 << 20

    /// This outcome with the values a database may refuse made storable: NUL characters removed
    /// from the result (also inside its JSON strings and keys) and from the error text, a result
    /// that is not JSON wrapped as `{"result": "<text>"}`, an oversized result replaced by
    /// `{"truncated": true, "originalBytes": N, "head": "<its first MiB>"}` and an oversized
    /// error cut with a marker.
    ///
    /// Used for an outcome the store refused (``JobStoreError/valueRejected(_:)``), so that one
    /// job's odd output never blocks the outcomes written with it.
    public func storable() -> JobOutcome {
        switch self {
        case .completed(let result):
            .completed(result: Self.storableResult(result))
        case .retry(let error, let delay):
            .retry(error: Self.storableError(error), delay: delay)
        case .failed(let error):
            .failed(error: Self.storableError(error))
        case .released:
            .released
        case .deferred(let reason, let delay):
            .deferred(reason: Self.storableError(reason), delay: delay)
        }
    }

    static func storableError(_ error: String) -> String {
        let clean = error.contains("\u{0}") ? error.replacingOccurrences(of: "\u{0}", with: "") : error
        guard clean.utf8.count > maximumErrorBytes else { return clean }
        let marker = " [cut: \(clean.utf8.count) bytes]"
        return String(decoding: clean.utf8.prefix(maximumErrorBytes - marker.utf8.count), as: UTF8.self) + marker
    }

    static func storableResult(_ result: String) -> String {
        let json: String
        if let object = try? JSONSerialization.jsonObject(with: Data(result.utf8), options: [.fragmentsAllowed]),
           let data = try? JSONSerialization.data(withJSONObject: withoutNUL(object), options: [.fragmentsAllowed, .sortedKeys]) {
            json = String(decoding: data, as: UTF8.self)
        } else {
            json = encode(["result": result.replacingOccurrences(of: "\u{0}", with: "")])
        }
        guard json.utf8.count > maximumResultBytes else { return json }
        let head = String(decoding: json.utf8.prefix(truncatedResultHeadBytes), as: UTF8.self)
        return encode(["truncated": true, "originalBytes": json.utf8.count, "head": head])
    }

    /// `value` with NUL characters removed from every string and key.
    private static func withoutNUL(_ value: Any) -> Any {
        switch value {
        case let text as String:
            return text.replacingOccurrences(of: "\u{0}", with: "")
        case let array as [Any]:
            return array.map(withoutNUL)
        case let object as [String: Any]:
            return Dictionary(object.map { (key: $0.key.replacingOccurrences(of: "\u{0}", with: ""), value: withoutNUL($0.value)) }) { a, _ in a }
        default:
            return value
        }
    }

    private static func encode(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
