// Package metrics defines the processor's Prometheus metrics. Labels are
// bounded (kinds, states, codes, targets): never an org, ARN or id.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/ops"
)

// Metrics are the processor's instruments.
type Metrics struct {
	Registry        *prometheus.Registry
	Work            *prometheus.CounterVec   // kind, state, code
	WorkSeconds     prometheus.Histogram     // one work message, retries included
	CallSeconds     *prometheus.HistogramVec // target, operation
	CallErrors      *prometheus.CounterVec   // target, kind (transient, permanent)
	Retries         *prometheus.CounterVec   // target
	Parked          prometheus.Counter       // reconciles parked for a later retry
	RetriesEnqueued prometheus.Counter       // parked retries that became due and were enqueued
	RetryDuplicates prometheus.Counter       // due parked retries the stream already held (not enqueued again)
	DeadLetters     *prometheus.CounterVec   // reason
	// SourcesUnauthorized counts Sources calls refused with 401/403: Cloudoreg's PSK is wrong.
	SourcesUnauthorized prometheus.Counter
	StatusMessages      *prometheus.CounterVec // status
	Checks              *prometheus.CounterVec // outcome of availability check requests
	PeriodicQueued      prometheus.Counter     // periodic reconciles stored in the work stream
	PeriodicRepairs     *prometheus.CounterVec // repair: RepairRemoved, RepairReregistered, RepairStatusResent

	// Backlog, refreshed on a ticker from JetStream (every processor
	// reports the same values: aggregate with max, not sum).
	DeadLettersWaiting prometheus.Gauge
	ParkedRetries      prometheus.Gauge
	ParkedOldest       prometheus.Gauge     // age of the oldest parked retry's first failure
	WorkPending        *prometheus.GaugeVec // work_partition
	WorkUnacked        *prometheus.GaugeVec // work_partition
	WorkRedelivered    *prometheus.GaugeVec // work_partition
	NATSConnected      prometheus.Gauge

	collectors []prometheus.Collector
}

// Families names every metric family the processor can expose.
func (m *Metrics) Families() []string { return ops.Families(m.Registry, m.collectors...) }

// Repairs a periodic reconcile counts, compared with the source's last
// recorded outcome (see the worker).
const (
	RepairRemoved      = "removed"
	RepairReregistered = "re-registered"
	RepairStatusResent = "status re-sent"
)

// New registers the processor's metrics on a fresh registry (see ops.NewRegistry).
func New() *Metrics {
	r := ops.NewRegistry()
	m := &Metrics{
		Registry: r,
		Work: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_work_total",
			Help: "Work messages finished, by kind, resulting state and error code.",
		}, []string{"kind", "state", "code"}),
		WorkSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cloudoreg_processor_work_seconds",
			Help:    "Time to finish one work message, in-place retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}),
		CallSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cloudoreg_processor_external_call_seconds",
			Help:    "Latency of calls to external services, by target and operation.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}, []string{"target", "operation"}),
		CallErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_external_call_errors_total",
			Help: "Failed calls to external services, by target, operation and kind (transient, permanent, not_found).",
		}, []string{"target", "operation", "kind"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_retries_total",
			Help: "In-place retries after a transient failure, by failing target.",
		}, []string{"target"}),
		Parked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_processor_parked_total",
			Help: "Reconciles parked for a later retry after in-place retries were spent.",
		}),
		RetriesEnqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_processor_parked_retries_enqueued_total",
			Help: "Parked retries that became due and were enqueued as work.",
		}),
		RetryDuplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_processor_parked_retries_duplicate_total",
			Help: "Due parked retries whose publish the work stream took for a duplicate of one it holds (the entry is kept).",
		}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_dead_letters_total",
			Help: "Work messages copied to the dead-letter stream, by reason.",
		}, []string{"reason"}),
		SourcesUnauthorized: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_processor_sources_unauthorized_total",
			Help: "Sources calls refused with 401 or 403: Cloudoreg's PSK (SOURCES_PSK) is wrong.",
		}),
		StatusMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_status_messages_total",
			Help: "Availability status messages delivered to Kafka, by status.",
		}, []string{"status"}),
		Checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_availability_checks_total",
			Help: "Availability check requests from Sources, by outcome.",
		}, []string{"outcome"}),
		PeriodicQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloudoreg_processor_periodic_reconciles_enqueued_total",
			Help: "Periodic reconciles of sources holding an account claim, enqueued as work.",
		}),
		PeriodicRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloudoreg_processor_periodic_repairs_total",
			Help: "Periodic reconciles that changed what the source's last recorded outcome said, by repair (removed, re-registered, status re-sent).",
		}, []string{"repair"}),
		DeadLettersWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_dead_letters_waiting",
			Help: "Messages in the dead-letter stream CLOUDOREG_DLQ (replay or purge them).",
		}),
		ParkedRetries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_parked_retries",
			Help: "Sources parked for a later retry (entries of CLOUDOREG_RETRIES).",
		}),
		ParkedOldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_parked_oldest_age_seconds",
			Help: "Since when the longest-parked source has been failing, in seconds (0: none parked).",
		}),
		WorkPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_work_pending",
			Help: "Work messages of the partition not yet delivered to a processor.",
		}, []string{"work_partition"}),
		WorkUnacked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_work_unacknowledged",
			Help: "Work messages of the partition delivered and not yet acknowledged (0 or 1).",
		}, []string{"work_partition"}),
		WorkRedelivered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_work_redelivered",
			Help: "Work messages of the partition delivered more than once and not yet acknowledged (a processor died or hung on it).",
		}, []string{"work_partition"}),
		NATSConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cloudoreg_processor_nats_connected",
			Help: "1 while the processor is connected to NATS, else 0.",
		}),
	}
	m.collectors = []prometheus.Collector{m.Work, m.WorkSeconds, m.CallSeconds, m.CallErrors, m.Retries, m.Parked, m.RetriesEnqueued, m.RetryDuplicates, m.DeadLetters, m.SourcesUnauthorized, m.StatusMessages, m.Checks, m.PeriodicQueued, m.PeriodicRepairs,
		m.DeadLettersWaiting, m.ParkedRetries, m.ParkedOldest, m.WorkPending, m.WorkUnacked, m.WorkRedelivered, m.NATSConnected}
	r.MustRegister(m.collectors...)
	// Series an alert watches exist from the start at 0, so that
	// increase(...) > 0 fires on the first dead letter and a rate of
	// unavailable statuses is 0 rather than absent.
	for _, reason := range failure.DeadLetterReasons() {
		m.DeadLetters.WithLabelValues(string(reason))
	}
	for _, s := range []string{"available", "unavailable"} {
		m.StatusMessages.WithLabelValues(s)
	}
	for _, repair := range []string{RepairRemoved, RepairReregistered, RepairStatusResent} {
		m.PeriodicRepairs.WithLabelValues(repair)
	}
	for _, target := range []string{"sources", "sts", "rhsm", "kafka", "claims"} {
		m.Retries.WithLabelValues(target)
	}
	for _, outcome := range []string{"accepted", "coalesced", "bad_request", "too_large", "no_tenant", "unavailable", "method_not_allowed"} {
		m.Checks.WithLabelValues(outcome)
	}
	return m
}
