import Foundation

extension UUID {
    /// Whether this id sorts before `other` as PostgreSQL sorts `uuid` values (byte by byte):
    /// the order in which the store's multi-row writes lock rows, so that two of them never
    /// wait for each other's rows.
    func precedes(_ other: UUID) -> Bool {
        withUnsafeBytes(of: uuid) { left in
            withUnsafeBytes(of: other.uuid) { right in memcmp(left.baseAddress!, right.baseAddress!, 16) < 0 }
        }
    }
}
