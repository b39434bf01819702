package app

import (
	"context"
	"errors"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/arn"
	"github.com/cloudoreg/cloudoreg/processor/internal/awsverify"
	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/cloudoreg/cloudoreg/shared/sources"
	"github.com/cloudoreg/cloudoreg/shared/sourcesapi"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// observe records the latency and failure kind of one external call.
func observe(m *metrics.Metrics, target, op string, started time.Time, err error) {
	m.CallSeconds.WithLabelValues(target, op).Observe(time.Since(started).Seconds())
	if err != nil {
		m.CallErrors.WithLabelValues(target, op, errorKind(err)).Inc()
	}
}

// errorKind labels a failed call by the failure it returned.
func errorKind(err error) string {
	switch {
	case errors.Is(err, failure.ErrNotFound):
		return "not_found"
	case errors.Is(err, failure.ErrConfiguration):
		return "unauthorized"
	case failure.IsTransient(err):
		return "transient"
	default:
		return "permanent"
	}
}

// instrumentedSources measures every Sources call and counts the calls
// refused for Cloudoreg's PSK, which the alert "Sources refuses the PSK"
// watches (the worker logs the retries as errors).
type instrumentedSources struct {
	c *sourcesapi.Client
	m *metrics.Metrics
}

func (s instrumentedSources) observe(op string, started time.Time, err error) {
	observe(s.m, "sources", op, started, err)
	if failure.ReasonOf(err) == failure.ReasonSourcesUnauthorized {
		s.m.SourcesUnauthorized.Inc()
	}
}

// CloudMeterTypeID measures only real calls: the cached answer is no call.
func (s instrumentedSources) CloudMeterTypeID(ctx context.Context, t event.Tenant) (string, error) {
	if id, ok := s.c.CachedCloudMeterTypeID(); ok {
		return id, nil
	}
	start := time.Now()
	id, err := s.c.CloudMeterTypeID(ctx, t)
	s.observe("application_type", start, err)
	return id, err
}

func (s instrumentedSources) SourceApplications(ctx context.Context, t event.Tenant, id string) ([]sources.Application, error) {
	start := time.Now()
	apps, err := s.c.SourceApplications(ctx, t, id)
	s.observe("source_applications", start, err)
	return apps, err
}

func (s instrumentedSources) ApplicationAuthentications(ctx context.Context, t event.Tenant, id string) ([]sources.Authentication, error) {
	start := time.Now()
	auths, err := s.c.ApplicationAuthentications(ctx, t, id)
	s.observe("application_authentications", start, err)
	return auths, err
}

func (s instrumentedSources) Links(ctx context.Context, t event.Tenant, by sources.LinkFilter, id string) ([]sources.Link, error) {
	start := time.Now()
	links, err := s.c.Links(ctx, t, by, id)
	s.observe("links", start, err)
	return links, err
}

func (s instrumentedSources) AuthenticationWithSecret(ctx context.Context, t event.Tenant, id string) (sources.Authentication, error) {
	start := time.Now()
	a, err := s.c.AuthenticationWithSecret(ctx, t, id)
	s.observe("authentication", start, err)
	return a, err
}

// instrumentedVerifier measures STS verification.
type instrumentedVerifier struct {
	v *awsverify.Verifier
	m *metrics.Metrics
}

func (v instrumentedVerifier) Verify(ctx context.Context, role arn.Role, externalID string) error {
	start := time.Now()
	err := v.v.Verify(ctx, role, externalID)
	observe(v.m, "sts", "verify", start, err)
	return err
}

// instrumentedReporter measures every status message sent to Kafka and
// keeps the kafka readiness check honest: sarama's SyncProducer has no
// health API, so the check holds the outcome of the last send. A failed
// send makes the processor not ready (naming the error) until a status
// message is delivered again; the failed one is retried like any transient
// failure, so the next delivery comes with the next retry.
type instrumentedReporter struct {
	r     reconcile.Reporter
	m     *metrics.Metrics
	ready *ops.Readiness
}

func (i instrumentedReporter) Report(ctx context.Context, m work.Message, msg status.Message) error {
	start := time.Now()
	err := i.r.Report(ctx, m, msg)
	observe(i.m, "kafka", "status", start, err)
	if err != nil {
		i.ready.Set(ops.CheckKafka, false, "the last status message could not be delivered: "+err.Error())
	} else {
		i.ready.Set(ops.CheckKafka, true, "")
	}
	return err
}

// registry adapts the RHSM client to reconcile.Registry and measures it.
type registry struct {
	c *rhsm.Client
	m *metrics.Metrics
}

func (r registry) Register(ctx context.Context, orgID, accountID, sourceID string) error {
	start := time.Now()
	err := r.c.Register(ctx, orgID, accountID, sourceID)
	if errors.Is(err, failure.ErrConflict) {
		// A conflict is an answer the reconcile acts on, not a failed call.
		r.m.CallSeconds.WithLabelValues("rhsm", "register").Observe(time.Since(start).Seconds())
		return err
	}
	observe(r.m, "rhsm", "register", start, err)
	return err
}

func (r registry) Remove(ctx context.Context, orgID, sourceID string) error {
	start := time.Now()
	err := r.c.Remove(ctx, orgID, sourceID)
	observe(r.m, "rhsm", "remove", start, err)
	return err
}

func (r registry) Registered(ctx context.Context, orgID, accountID, sourceID string) (bool, error) {
	start := time.Now()
	ok, err := r.c.Registered(ctx, orgID, accountID, sourceID)
	observe(r.m, "rhsm", "enabled", start, err)
	return ok, err
}

func (p *Processor) registry() (registry, error) {
	c, err := rhsm.New(rhsm.Config{
		BaseURL:     p.cfg.RHSMURL,
		AuthHeader:  p.cfg.RHSMAuthHeader,
		AuthValue:   config.Secret(p.cfg.RHSMAuthValue, p.cfg.RHSMAuthValueFile),
		BearerToken: config.Secret(p.cfg.RHSMBearerToken, p.cfg.RHSMBearerTokenFile),
		CertFile:    p.cfg.RHSMCertFile,
		KeyFile:     p.cfg.RHSMKeyFile,
		CAFile:      p.cfg.RHSMCAFile,
		Timeout:     p.cfg.RHSMTimeout,
	})
	if err != nil {
		return registry{}, err
	}
	return registry{c: c, m: p.metrics}, nil
}

func (p *Processor) verifier(ctx context.Context) (*awsverify.Verifier, error) {
	c := awsverify.Config{
		Endpoint:        p.cfg.STSEndpoint,
		Region:          p.cfg.AWSRegion,
		AccessKeyID:     p.cfg.AWSAccessKeyID,
		SecretAccessKey: config.Secret(p.cfg.AWSSecretAccessKey, p.cfg.AWSSecretAccessKeyFile),
		Timeout:         p.cfg.STSTimeout,
	}
	if c.AccessKeyID == "" && loopback(c.Endpoint) {
		// The local STS stand-in accepts any signature; spare developers
		// from configuring fake AWS credentials.
		c.AccessKeyID, c.SecretAccessKey = "cloudoreg-local", "cloudoreg-local"
	}
	return awsverify.New(ctx, c)
}
