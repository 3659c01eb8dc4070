import Foundation
import Testing
import WorkerCore
@testable import WorkerService

@Suite("JobInput")
struct JobInputTests {
    @Test("a full JSONL line, camelCase or snake_case")
    func fullLine() throws {
        let session = UUID()
        for line in [
            #"{"prompt":"p","queue":"q","sessionId":"\#(session)","priority":3,"runAt":"2030-01-02T03:04:05Z","maxAttempts":5,"payload":{"a":1}}"#,
            #"{"prompt":"p","queue":"q","session_id":"\#(session)","priority":3,"run_at":"2030-01-02T03:04:05.000Z","max_attempts":5,"payload":{"a":1}}"#,
        ] {
            let job = try JobInput.job(fromJSONLine: Substring(line), defaultMaxAttempts: 3)
            #expect(job.prompt == "p" && job.queue == "q" && job.sessionID == session && job.priority == 3 && job.maxAttempts == 5)
            #expect(job.runAt == Date(timeIntervalSince1970: 1_893_553_445))
            #expect(job.payload == #"{"a":1}"#)
        }
        #expect(try JobInput.job(fromJSONLine: #"{"prompt":"only"}"#, defaultMaxAttempts: 7).maxAttempts == 7)
    }

    @Test("bad lines say what is wrong", arguments: [
        "not json", "[1]", #"{"queue":"q"}"#, #"{"prompt":1}"#, #"{"prompt":"p","payload":[1]}"#,
        #"{"prompt":"p","sessionId":"nope"}"#, #"{"prompt":"p","runAt":"tomorrow"}"#, #"{"prompt":"p","priority":"high"}"#,
        #"{"prompt":"p","maxAttempts":0}"#, #"{"prompt":"p","colour":"red"}"#, #"{"prompt":"p","priority":true}"#,
        // Out of what the tables hold exactly (before: stored as another time, or refused by PostgreSQL alone).
        #"{"prompt":"p","runAt":"99999-01-01T00:00:00Z"}"#, #"{"prompt":"p","runAt":"0001-01-01T00:00:00Z"}"#,
        #"{"prompt":"p","maxAttempts":3000000000}"#,
    ])
    func badLines(line: String) {
        #expect(throws: JobInput.Invalid.self) { _ = try JobInput.job(fromJSONLine: Substring(line), defaultMaxAttempts: 3) }
    }
}
