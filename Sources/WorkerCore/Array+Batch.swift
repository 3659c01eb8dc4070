extension Array {
    /// Removes and returns the first `maximum` elements (all of them when there are fewer): a
    /// recorder's next write. Taking everything swaps the storage out instead of copying it.
    mutating func removeBatch(upTo maximum: Int) -> [Element] {
        if count <= maximum {
            defer { self = [] }
            return self
        }
        defer { removeFirst(maximum) }
        return Array(prefix(maximum))
    }
}
