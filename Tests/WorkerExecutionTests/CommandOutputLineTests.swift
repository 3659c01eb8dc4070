import Foundation
import Testing
import WorkerCore
@testable import WorkerExecution

@Suite("CommandOutputLine")
struct CommandOutputLineTests {
    static func usage(_ json: String) throws -> JobUsage? {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        return CommandOutputLine.usage(in: object)
    }

    @Test("a result's usage: input counts the cached tokens, and the cost")
    func claudeResult() throws {
        let usage = try Self.usage(#"{"type":"result","total_cost_usd":0.5,"usage":{"input_tokens":16,"cache_creation_input_tokens":4,"cache_read_input_tokens":80,"output_tokens":7}}"#)
        #expect(usage == JobUsage(inputTokens: 100, outputTokens: 7, costUSD: 0.5))
    }

    @Test("numbers a command prints that are no count (huge, negative, a string) are taken within sense, never a crash of the worker")
    func outOfRange() throws {
        // Before: Int64(1e300) trapped, stopping the worker and every job it ran.
        let huge = try Self.usage(#"{"type":"result","total_cost_usd":1e300,"usage":{"input_tokens":1e300,"cache_read_input_tokens":1e19,"output_tokens":9.3e18}}"#)
        #expect(huge == JobUsage(inputTokens: CommandOutputLine.maximumTokens, outputTokens: CommandOutputLine.maximumTokens, costUSD: CommandOutputLine.maximumCostUSD))
        let negative = try Self.usage(#"{"type":"turn.completed","usage":{"input_tokens":-5,"output_tokens":"12"}}"#)
        #expect(negative == JobUsage(inputTokens: 0, outputTokens: 0, costUSD: 0))
        // Sums saturate (at JavaScript's exact integers) rather than trap.
        let big = JobUsage(inputTokens: .max - 1, outputTokens: .max, costUSD: 1)
        #expect((big + big).inputTokens == JobUsage.maximumTokens)
        #expect((big + big).outputTokens == JobUsage.maximumTokens)
    }
}
