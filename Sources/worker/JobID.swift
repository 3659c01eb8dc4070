import ArgumentParser
import Foundation
import WorkerService

/// A job id given on the command line: a UUID, in upper or lower case.
///
/// Parsed in `validate()` rather than as a `UUID` argument, because ArgumentParser's own message
/// ("The value 'x' is invalid for '<id>'") does not say what a job id looks like.
enum JobID {
    /// - Throws: `ValidationError` saying what a job id is.
    static func parse(_ text: String) throws -> UUID {
        guard let id = UUID(uuidString: text.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError(
                "\(TerminalText.escaped(text)) is not a job id: a job id is a UUID such as 0193a5c2-7d4e-7b1a-9f3e-2c6d8e4f1a2b, "
                    + "as printed by `worker enqueue` and `worker jobs list`"
            )
        }
        return id
    }

    /// A session's or a user's id (`kind`) given to `option`.
    /// - Throws: `ValidationError` saying what such an id is.
    static func parse(_ text: String, option: String, kind: String = "session id") throws -> UUID {
        guard let id = UUID(uuidString: text.trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("\(option): \(TerminalText.escaped(text)) is not a \(kind): a \(kind) is a UUID such as 0193a5c2-7d4e-7b1a-9f3e-2c6d8e4f1a2b")
        }
        return id
    }
}
