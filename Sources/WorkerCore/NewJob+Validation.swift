import Foundation

extension NewJob {
    /// Checks what every driver requires of a job before inserting it.
    /// - Throws: ``JobStoreError/invalidJob(_:)`` naming the field.
    public func validate() throws {
        if queue.isEmpty { throw JobStoreError.invalidJob("queue must not be empty") }
        if maxAttempts < 1 { throw JobStoreError.invalidJob("maxAttempts must be at least 1, got \(maxAttempts)") }
        guard let data = payload.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
              object is [String: Any]
        else {
            throw JobStoreError.invalidJob("payload must be a JSON object, got \(payload.prefix(80))")
        }
    }
}
