// Package metrics defines the processor's Prometheus metrics. Labels are
// bounded (kinds, states, codes, targets): never an org, ARN or id.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloudoreg/cloudoreg/processor/internal/failure"
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
	DeadLetters     *prometheus.CounterVec   // reason
	// SourcesUnauthorized counts Sources calls refused with 401/403: Cloudoreg's PSK is wrong.
	SourcesUnauthorized prometheus.Counter
	StatusMessages      *prometheus.CounterVec // status
	Checks              *prometheus.CounterVec // outcome of availability check requests
}

// New registers the processor's metrics on a fresh registry (with the Go
// and process collectors).
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
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
	}
	r.MustRegister(m.Work, m.WorkSeconds, m.CallSeconds, m.CallErrors, m.Retries, m.Parked, m.RetriesEnqueued, m.DeadLetters, m.SourcesUnauthorized, m.StatusMessages, m.Checks)
	// Series an alert watches exist from the start at 0, so that
	// increase(...) > 0 fires on the first dead letter and a rate of
	// unavailable statuses is 0 rather than absent.
	for _, reason := range failure.DeadLetterReasons() {
		m.DeadLetters.WithLabelValues(string(reason))
	}
	for _, s := range []string{"available", "unavailable"} {
		m.StatusMessages.WithLabelValues(s)
	}
	for _, target := range []string{"sources", "sts", "rhsm", "kafka", "claims"} {
		m.Retries.WithLabelValues(target)
	}
	for _, outcome := range []string{"accepted", "bad_request", "no_tenant", "unavailable", "method_not_allowed"} {
		m.Checks.WithLabelValues(outcome)
	}
	return m
}
