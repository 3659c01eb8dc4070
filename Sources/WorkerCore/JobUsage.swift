/// What a job spent, summed over its attempts: the tokens and money its agent reported (the
/// columns `input_tokens`, `output_tokens`, `cost_usd`), and what the worker measured of its
/// attempts (`cpu_seconds`, `peak_memory_bytes` (the largest attempt's), `run_seconds`).
public struct JobUsage: Sendable, Hashable {
    /// Tokens the model read (cached ones included).
    public var inputTokens: Int64
    public var outputTokens: Int64
    public var costUSD: Double
    /// CPU time of the attempt's command (user and system, all its processes), where the worker
    /// can measure it (a control group per attempt).
    public var cpuSeconds: Double
    /// The most memory the attempt's command held at once, where the worker can measure it.
    public var peakMemoryBytes: Int64
    /// Wall time of the attempt's handler.
    public var runSeconds: Double

    public static let zero = JobUsage(inputTokens: 0, outputTokens: 0, costUSD: 0)

    public init(inputTokens: Int64 = 0, outputTokens: Int64 = 0, costUSD: Double = 0, cpuSeconds: Double = 0, peakMemoryBytes: Int64 = 0, runSeconds: Double = 0) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.costUSD = costUSD
        self.cpuSeconds = cpuSeconds
        self.peakMemoryBytes = peakMemoryBytes
        self.runSeconds = runSeconds
    }

    public var isZero: Bool {
        inputTokens == 0 && outputTokens == 0 && costUSD == 0 && cpuSeconds == 0 && peakMemoryBytes == 0 && runSeconds == 0
    }

    /// The most tokens of a kind an attempt, or a job over all its attempts, counts: 2^53 - 1,
    /// the largest integer JavaScript holds exactly (an app reads the columns with supabase-js),
    /// and far enough below `Int64.max` that a store adds two of them without overflowing (the
    /// job's sum was `Int64.max` after one attempt that saturated it, and the next attempt's
    /// outcome failed with "bigint out of range" on PostgreSQL, and made the row unreadable on
    /// SQLite, where the sum became a float).
    public static let maximumTokens: Int64 = (1 << 53) - 1

    /// This usage with its token counts within 0 and ``maximumTokens``: what a store adds to the
    /// job's (a handler may report any `Int64`).
    public var bounded: JobUsage { .zero + self }

    /// Sums, but for the peak memory: the larger. Token counts stay within 0 and
    /// ``maximumTokens``, rather than trap or go negative.
    public static func + (a: JobUsage, b: JobUsage) -> JobUsage {
        func sum(_ x: Int64, _ y: Int64) -> Int64 {
            min(min(max(x, 0), maximumTokens) + min(max(y, 0), maximumTokens), maximumTokens)
        }
        return JobUsage(
            inputTokens: sum(a.inputTokens, b.inputTokens), outputTokens: sum(a.outputTokens, b.outputTokens), costUSD: a.costUSD + b.costUSD,
            cpuSeconds: a.cpuSeconds + b.cpuSeconds, peakMemoryBytes: max(a.peakMemoryBytes, b.peakMemoryBytes),
            runSeconds: a.runSeconds + b.runSeconds)
    }
}
