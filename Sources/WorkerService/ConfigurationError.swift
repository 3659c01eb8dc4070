/// A configuration value the worker cannot use. Its description is the one line a user sees.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The environment variable at fault.
    public var variable: String
    /// The value as given (already redacted when the variable is secret).
    public var value: String
    /// What would be accepted.
    public var expected: String

    public init(variable: String, value: String, expected: String) {
        self.variable = variable
        self.value = value
        self.expected = expected
    }

    public var description: String {
        "invalid configuration: \(variable)=\(value.isEmpty ? "\"\"" : value) is not valid; expected \(expected)"
    }
}
