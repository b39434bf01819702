// Package metrics defines the listener's Prometheus metrics. Labels are
// bounded (event types, reasons, partitions): never an org, ARN or id.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudoreg/cloudoreg/shared/ops"
)

// Metrics are the listener's instruments.
type Metrics struct {
	Registry       *prometheus.Registry
	Events         *prometheus.CounterVec // event_type, outcome (routed, ignored, skipped), reason
	Resolved       *prometheus.CounterVec // via (payload, index, sources)
	Published      prometheus.Counter     // work messages acknowledged by JetStream
	Duplicates     prometheus.Counter     // acknowledged as duplicates (a replay)
	EventLogsHeld  prometheus.Counter     // "event forwarded" lines held back above the log rate
	PublishSeconds prometheus.Histogram   // publish to acknowledgement
	Retries        *prometheus.CounterVec // target (nats, sources, index)
	Lag            *prometheus.GaugeVec   // partition
	InFlight       prometheus.Gauge       // publishes awaiting acknowledgement
	Commits        prometheus.Counter     // offsets marked
	Rebalances     prometheus.Counter     // consumer group sessions started
	LastMarked     *prometheus.GaugeVec   // partition: last offset marked
	NATSConnected  prometheus.Gauge       // 1 while connected to NATS

	collectors []prometheus.Collector
}

// Families names every metric family the listener can expose.
func (m *Metrics) Families() []string { return ops.Families(m.Registry, m.collectors...) }

// New registers the listener's metrics on a fresh registry (see ops.NewRegistry).
func New() *Metrics {
	r := ops.NewRegistry()
	m := &Metrics{
		Registry: r,
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_listener_events_total",
			Help: "Kafka events consumed, by event type, outcome (routed, ignored, skipped) and skip reason.",
		}, []string{"event_type", "outcome", "reason"}),
		Resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_listener_source_resolutions_total",
			Help: "Source ids resolved, by where they came from (payload, index, sources).",
		}, []string{"via"}),
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_listener_published_total",
			Help: "Work messages acknowledged by JetStream.",
		}),
		EventLogsHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_listener_event_logs_aggregated_total",
			Help: "Forwarded events logged in a per-second summary line instead of a line each (more than LISTENER_EVENT_LOG_RATE a second on a partition).",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_listener_duplicates_total",
			Help: "Work messages JetStream acknowledged as duplicates (a Kafka replay absorbed by the duplicate window).",
		}),
		PublishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cloudoreg_listener_publish_seconds",
			Help:    "Time from publishing a work message to its JetStream acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_listener_retries_total",
			Help: "Transient failures retried, by target (nats: publishing to JetStream, resolve: finding the source id in the routing index or Sources).",
		}, []string{"target"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudoreg_listener_consumer_lag",
			Help: "Messages of the partition not yet forwarded and committed: log-end offset minus the group's committed offset, measured at the brokers every KAFKA_LAG_INTERVAL.",
		}, []string{"partition"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudoreg_listener_inflight_publishes",
			Help: "Work messages published and not yet acknowledged.",
		}),
		Commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_listener_offsets_marked_total",
			Help: "Kafka offsets marked for commit (only after JetStream acknowledged them and all before them).",
		}),
		Rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_listener_sessions_total",
			Help: "Consumer group sessions started (a rebalance starts a new one).",
		}),
		LastMarked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudoreg_listener_marked_offset",
			Help: "Next offset to consume as marked for commit, by partition.",
		}, []string{"partition"}),
		NATSConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudoreg_listener_nats_connected",
			Help: "1 while the listener is connected to NATS, else 0.",
		}),
	}
	m.collectors = []prometheus.Collector{m.Events, m.Resolved, m.Published, m.Duplicates, m.EventLogsHeld, m.PublishSeconds, m.Retries, m.Lag, m.InFlight, m.Commits, m.Rebalances, m.LastMarked, m.NATSConnected}
	r.MustRegister(m.collectors...)
	// Series an alert watches exist from the start at 0.
	for _, target := range []string{"nats", "resolve"} {
		m.Retries.WithLabelValues(target)
	}
	return m
}
