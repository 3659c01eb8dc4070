import Configuration
import Logging
import WorkerCore

/// Reads raw strings through swift-configuration and turns them into checked values.
///
/// Every value is read as text and parsed here, so that a malformed value is an error naming
/// the variable (swift-configuration's typed non-throwing reads fall back to the default).
struct ConfigValues {
    let reader: ConfigReader

    /// The value, or `nil` when unset or empty.
    func raw(_ name: String) -> String? {
        let value = reader.string(forKey: ConfigKey(name), isSecret: WorkerConfiguration.secretVariables.contains(name))
        // Line breaks too: a secret mounted from a file (`kubectl create secret --from-file`)
        // ends with one, and an API_TOKEN ending in "\n" matched no client's token.
        guard let value, !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return nil }
        return value.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func integer(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = raw(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(
                variable: name,
                value: text,
                expected: "a whole number from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return value
    }

    func choice<T: RawRepresentable & CaseIterable>(_ name: String, fallback: String? = nil, default defaultValue: T) throws -> T
    where T.RawValue == String {
        if let value = try optionalChoice(name, T.self) { return value }
        if let fallback, let value = try optionalChoice(fallback, T.self) { return value }
        return defaultValue
    }

    func optionalChoice<T: RawRepresentable & CaseIterable>(_ name: String, _ type: T.Type) throws -> T? where T.RawValue == String {
        guard let text = raw(name) else { return nil }
        guard let value = T(rawValue: text.lowercased()) else {
            throw ConfigurationError(variable: name, value: text, expected: "one of: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }

    func logLevel(_ name: String, default defaultValue: Logger.Level) throws -> Logger.Level {
        guard let text = raw(name) else { return defaultValue }
        let aliases: [String: Logger.Level] = ["warn": .warning, "fatal": .critical]
        guard let level = Logger.Level(rawValue: text.lowercased()) ?? aliases[text.lowercased()] else {
            throw ConfigurationError(
                variable: name,
                value: text,
                expected: "one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return level
    }

    enum ListPattern {
        case queueName, environmentName
    }

    /// A comma-separated list of queue names (or environment variable names). Queue names follow
    /// ``NewJob/isValidQueueName(_:)``: a name jobs cannot be enqueued into would never get work.
    func list(_ name: String, default defaultValue: [String], allowEmpty: Bool = false, pattern: ListPattern = .queueName) throws -> [String] {
        guard let text = raw(name) else { return defaultValue }
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let valid: (String) -> Bool = switch pattern {
        case .queueName: NewJob.isValidQueueName
        case .environmentName: { $0.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) != nil }
        }
        guard !items.isEmpty, items.allSatisfy(valid) else {
            throw ConfigurationError(
                variable: name,
                value: text,
                expected: pattern == .queueName
                    ? "comma-separated queue names, each 1 to 64 of the characters A-Z a-z 0-9 _ . : - (e.g. default,mail:send)"
                    : "comma-separated environment variable names (e.g. ANTHROPIC_API_KEY,GIT_AUTHOR_NAME)"
            )
        }
        var seen = Set<String>()
        return items.filter { seen.insert($0).inserted }
    }

    func identifier(_ name: String) throws -> String? {
        guard let text = raw(name) else { return nil }
        guard Self.isName(text) else {
            throw ConfigurationError(variable: name, value: text, expected: "up to 128 letters, digits, '.', '_' and '-'")
        }
        return text
    }

    func host(_ name: String, default defaultValue: String) throws -> String {
        guard let text = raw(name) else { return defaultValue }
        let allowed = text.allSatisfy { $0.isLetter || $0.isNumber || ".-:_".contains($0) }
        guard allowed, text.count <= 253 else {
            throw ConfigurationError(variable: name, value: text, expected: "a host name or IP address, e.g. 127.0.0.1 or 0.0.0.0")
        }
        return text
    }

    func boolean(_ name: String, default defaultValue: Bool) throws -> Bool {
        guard let text = raw(name) else { return defaultValue }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ConfigurationError(variable: name, value: text, expected: "true or false")
        }
    }

    /// A table or schema name: letters, digits and `_`, at most `maxLength` characters.
    func sqlIdentifier(_ name: String, default defaultValue: String, maxLength: Int = 63) throws -> String {
        guard let text = raw(name) else { return defaultValue }
        guard text.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,\(maxLength - 1)}$", options: .regularExpression) != nil else {
            throw ConfigurationError(variable: name, value: text, expected: "letters, digits and _ (at most \(maxLength)), not starting with a digit")
        }
        return text
    }

    /// A comma-separated list of exit statuses (1-255); empty or unset is none.
    func exitStatuses(_ name: String) throws -> Set<Int32> {
        guard let text = raw(name), !text.trimmingCharacters(in: .whitespaces).isEmpty else { return [] }
        var statuses = Set<Int32>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let status = Int32(item), (1...255).contains(status) else {
                throw ConfigurationError(variable: name, value: text, expected: "comma-separated exit statuses from 1 to 255 (e.g. 2,64)")
            }
            statuses.insert(status)
        }
        return statuses
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 128 && text.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || "._-".contains($0) }
    }
}
