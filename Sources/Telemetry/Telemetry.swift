import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// Where this process's metrics go: nowhere until ``bootstrap()``, which the programs call only
/// when they are given `--metrics`.
public enum Telemetry {
    private static let registry = NIOLockedValueBox<PrometheusCollectorRegistry?>(nil)

    /// Turns the metrics on: every ``CounterMetric`` and ``GaugeMetric`` counts into one
    /// Prometheus registry from now on. Only the first call bootstraps swift-metrics (that may
    /// happen once a process); later calls return the same registry.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        registry.withLockedValue { registry in
            if let registry { return registry }
            let created = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: created))
            registry = created
            return created
        }
    }
}
