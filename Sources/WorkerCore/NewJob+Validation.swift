import Foundation

extension NewJob {
    /// The priorities a job may have: PostgreSQL's `smallint`, enforced by both drivers' tables.
    public static let priorityRange = -32768...32767

    /// What a queue name may be: it becomes a metric label and a column value, so it is short
    /// and plain (`[A-Za-z0-9_.:-]{1,64}`), enforced by both drivers' tables too.
    public static let queueNamePattern = "^[A-Za-z0-9_.:-]{1,64}$"

    /// Whether `name` is a valid queue name (``queueNamePattern``).
    public static func isValidQueueName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 64 else { return false }
        return name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
    }

    /// The most attempts a job may have (PostgreSQL's `integer`).
    public static let maximumMaxAttempts = Int(Int32.max)

    /// When a job may be due: from 1970 to the end of 9999.
    public static let runAtRange = Date(timeIntervalSince1970: 0)...Date(timeIntervalSince1970: 253_402_300_799)

    /// Checks what every driver requires of a job before inserting it.
    /// - Throws: ``JobStoreError/invalidJob(_:)`` naming the field.
    public func validate() throws {
        if queue.isEmpty { throw JobStoreError.invalidJob("queue must not be empty") }
        if !Self.isValidQueueName(queue) {
            throw JobStoreError.invalidJob(
                "queue \"\(queue.prefix(80))\" is not a valid queue name; use 1 to 64 of the characters A-Z a-z 0-9 _ . : -")
        }
        if maxAttempts < 1 { throw JobStoreError.invalidJob("maxAttempts must be at least 1, got \(maxAttempts)") }
        // PostgreSQL's `integer`: past it, PostgreSQL refused the job and SQLite stored it.
        if maxAttempts > Self.maximumMaxAttempts {
            throw JobStoreError.invalidJob("maxAttempts must be at most \(Self.maximumMaxAttempts), got \(maxAttempts)")
        }
        // Times a job is shown and stored with exactly (before, a year past 9999 was stored as
        // another time, and one before 1582 read back days off).
        if let runAt, !Self.runAtRange.contains(runAt) {
            throw JobStoreError.invalidJob("runAt must be between 1970-01-01 and 9999-12-31, got \(runAt.timeIntervalSince1970) s since 1970")
        }
        if !Self.priorityRange.contains(priority) {
            throw JobStoreError.invalidJob(
                "priority must be between \(Self.priorityRange.lowerBound) and \(Self.priorityRange.upperBound), got \(priority)")
        }
        guard let data = payload.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
              object is [String: Any]
        else {
            throw JobStoreError.invalidJob("payload must be a JSON object, got \(payload.prefix(80))")
        }
        // PostgreSQL's text and jsonb hold no NUL (it refused such a job), and SQLite's reader
        // ends a text at one: a prompt "do X\0 and Y" was stored whole and run as "do X".
        if prompt.utf8.contains(0) {
            throw JobStoreError.invalidJob("prompt must not contain the NUL character (U+0000)")
        }
        if Self.holdsNUL(object) {
            throw JobStoreError.invalidJob("payload must not contain the NUL character (\\u0000) in a key or a string")
        }
    }

    /// Whether a string of the parsed JSON `value`, key or value, at any depth, holds a NUL.
    private static func holdsNUL(_ value: Any) -> Bool {
        switch value {
        case let text as String: text.utf8.contains(0)
        case let object as [String: Any]: object.contains { holdsNUL($0.key) || holdsNUL($0.value) }
        case let array as [Any]: array.contains { holdsNUL($0) }
        default: false
        }
    }
}
