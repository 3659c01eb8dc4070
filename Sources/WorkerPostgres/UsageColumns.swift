import PostgresNIO
import WorkerCore

/// The six usage arrays the outcome statements take (``JobUsage``, one element per outcome), in
/// their order: input tokens, output tokens, cost, CPU seconds, peak memory, run seconds.
struct UsageColumns {
    private var inputTokens: [Int64] = [], outputTokens: [Int64] = [], costs: [Double] = []
    private var cpuSeconds: [Double] = [], peakMemoryBytes: [Int64] = [], runSeconds: [Double] = []

    mutating func append(_ usage: JobUsage) {
        let tokens = usage.bounded
        inputTokens.append(tokens.inputTokens)
        outputTokens.append(tokens.outputTokens)
        costs.append(usage.costUSD)
        cpuSeconds.append(usage.cpuSeconds)
        peakMemoryBytes.append(usage.peakMemoryBytes)
        runSeconds.append(usage.runSeconds)
    }

    /// Appends the six arrays to `bindings`, as the statements' last parameters.
    func bind(to bindings: inout PostgresBindings) {
        bindings.append(inputTokens)
        bindings.append(outputTokens)
        bindings.append(costs)
        bindings.append(cpuSeconds)
        bindings.append(peakMemoryBytes)
        bindings.append(runSeconds)
    }
}
