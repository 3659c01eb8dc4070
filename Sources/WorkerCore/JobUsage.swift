/// What an agent reported it spent on a job: tokens and money, summed over the job's attempts
/// (the columns `input_tokens`, `output_tokens`, `cost_usd`).
public struct JobUsage: Sendable, Hashable {
    /// Tokens the model read (cached ones included).
    public var inputTokens: Int64
    public var outputTokens: Int64
    public var costUSD: Double

    public static let zero = JobUsage(inputTokens: 0, outputTokens: 0, costUSD: 0)

    public init(inputTokens: Int64, outputTokens: Int64, costUSD: Double) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.costUSD = costUSD
    }

    public var isZero: Bool { inputTokens == 0 && outputTokens == 0 && costUSD == 0 }

    public static func + (a: JobUsage, b: JobUsage) -> JobUsage {
        JobUsage(inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens, costUSD: a.costUSD + b.costUSD)
    }
}
