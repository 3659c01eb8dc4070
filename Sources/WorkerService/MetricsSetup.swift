import CoreMetrics
import Prometheus

/// The process-wide Prometheus registry behind `GET /metrics`, bootstrapped once.
enum MetricsSetup {
    /// Job durations range from milliseconds (echo) to the better part of an hour (agents).
    static let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600), .seconds(1800), .seconds(3600),
    ]

    /// Bootstraps swift-metrics with Prometheus on first use.
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        // An attempt's measured resources (docs/WORKER_SERVICE.md, "Metrics").
        factory.valueHistogramBuckets["worker_job_cpu_seconds"] = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]
        factory.valueHistogramBuckets["worker_job_peak_memory_bytes"] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384].map { Double($0 << 20) }
        MetricsSystem.bootstrap(factory)
        return registry
    }()
}
