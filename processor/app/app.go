// Package app wires the processor: the work stream in, Sources, STS and RHSM
// out, status messages to Kafka, with metrics, probes and the availability
// check. It is a package (not main) so tests can run the real processor
// in-process.
package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/availability"
	"github.com/cloudoreg/cloudoreg/processor/internal/claims"
	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/periodic"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/processor/internal/report"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi"
	"github.com/cloudoreg/cloudoreg/processor/internal/worker"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/natsconn"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/cloudoreg/cloudoreg/shared/sourcesapi"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// Processor is a running processor.
type Processor struct {
	cfg     Config
	log     *logrus.Entry
	metrics *metrics.Metrics
	ready   *ops.Readiness
	ops     *ops.Server
	private *ops.Server
	js      jetstream.JetStream
	api     lateHandler
}

// New validates cfg and binds the ops and private ports.
func New(cfg Config, log *logrus.Entry) (*Processor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Processor{cfg: cfg, log: log, metrics: metrics.New(), ready: ops.NewReadiness(ops.CheckNATS, ops.CheckKafka, ops.CheckConsumers)}
	srv, err := ops.Listen(net.JoinHostPort(cfg.BindHost, strconv.Itoa(cfg.MetricsPort)), cfg.MetricsPath, p.metrics.Registry, p.ready)
	if err != nil {
		return nil, fmt.Errorf("metrics port: %w", err)
	}
	p.ops = srv
	check := &availability.Handler{Work: p, Log: log, Window: cfg.CheckWindow, Counted: func(o string) { p.metrics.Checks.WithLabelValues(o).Inc() }}
	mux := availability.Mux(check)
	mux.Handle(statusapi.Prefix+"/", &p.api)
	private, err := ops.Serve(net.JoinHostPort(cfg.BindHost, strconv.Itoa(cfg.PrivatePort)), mux)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return nil, fmt.Errorf("private port: %w", err)
	}
	p.private = private
	return p, nil
}

// OpsAddr is the address of /metrics, /healthz and /readyz.
func (p *Processor) OpsAddr() string { return p.ops.Addr() }

// PrivateAddr is the address of the availability check and the status API.
func (p *Processor) PrivateAddr() string { return p.private.Addr() }

// Enqueue publishes a work message (the availability check uses it).
func (p *Processor) Enqueue(ctx context.Context, m work.Message) (duplicate bool, err error) {
	if p.js == nil {
		return false, fmt.Errorf("not connected to JetStream yet")
	}
	return workstream.Publish(ctx, p.js, m)
}

// Run processes work until ctx ends, then stops within the grace period.
func (p *Processor) Run(ctx context.Context) error {
	defer p.shutdownServers(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops.StopOnFailure(ctx, cancel, p.log, p.ops, p.private)
	p.log.WithFields(logrus.Fields(config.Summary(p.cfg))).Info("processor starting")

	nc, err := natsconn.ConnectWatched(ctx, p.cfg.NATS, "cloudoreg-processor", p.log, p.ready, p.metrics.NATSConnected)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	stores, err := p.declare(ctx, js)
	if err != nil {
		return err
	}
	p.js = js

	producer, err := p.reporter()
	if err != nil {
		return err
	}
	defer producer.Close()
	// Creating the producer reached the brokers; from now on the outcome of
	// each status message keeps the check current.
	p.ready.Set(ops.CheckKafka, true, "")
	reporter := instrumentedReporter{r: producer, m: p.metrics, ready: p.ready}

	registry, err := p.registry()
	if err != nil {
		return err
	}
	rec, err := p.reconciler(ctx, stores.claims, reporter, registry)
	if err != nil {
		return err
	}
	if err := p.serveStatusAPI(ctx, js, registry.c); err != nil {
		return err
	}
	go backlog{js: js, parked: parkedReader{stores.parked}, m: p.metrics, log: p.log}.run(ctx, p.cfg.BacklogEvery)
	w := worker.New(p.workerConfig(), js, rec, reporter, stores.outcomes, stores.parked, p.metrics, p.log)
	if err := w.Start(ctx, nc); err != nil {
		return err
	}
	if p.cfg.ReconcileEvery > 0 {
		go p.periodic(stores.claims).Run(ctx)
	}
	p.ready.Set(ops.CheckConsumers, true, "")
	p.log.WithField("partitions", p.cfg.Work.Partitions).Info("processor consuming")

	<-ctx.Done()
	p.ready.Set(ops.CheckConsumers, false, "shutting down")
	p.log.Info("processor stopping: finishing work in progress")
	w.Stop(p.cfg.ShutdownGrace)
	if err := nc.Drain(); err != nil {
		p.log.WithError(err).Warn("draining the NATS connection")
	}
	p.log.Info("processor stopped")
	return nil
}

type stores struct {
	claims   *claims.Store
	outcomes *outcomes.Store
	parked   jetstream.KeyValue
}

// declare creates or updates the streams and KV buckets, retrying while NATS
// is unavailable: whichever replica starts first declares them.
func (p *Processor) declare(ctx context.Context, js jetstream.JetStream) (stores, error) {
	var s stores
	err := backoff.Policy{Base: 200 * time.Millisecond, Max: 5 * time.Second}.Retry(ctx,
		func() (err error) { s, err = p.declareOnce(ctx, js); return err },
		func(attempt int, err error) {
			p.log.WithError(err).WithField("attempt", attempt).Warn("declaring the work stream and KV buckets failed, retrying")
		})
	return s, err
}

func (p *Processor) declareOnce(ctx context.Context, js jetstream.JetStream) (stores, error) {
	var s stores
	if err := workstream.EnsureStreams(ctx, js, p.cfg.Work); err != nil {
		return s, err
	}
	var err error
	if s.claims, err = claims.Open(ctx, js, p.cfg.KVReplicas); err != nil {
		return s, err
	}
	if s.outcomes, err = outcomes.Open(ctx, js, p.cfg.KVReplicas, p.cfg.OutcomeTTL); err != nil {
		return s, err
	}
	if s.parked, err = worker.OpenParked(ctx, js, p.cfg.KVReplicas); err != nil {
		return s, err
	}
	return s, nil
}

func (p *Processor) reporter() (*report.Reporter, error) {
	sc, err := kafka.Config(p.cfg.Kafka, "cloudoreg-processor")
	if err != nil {
		return nil, err
	}
	return report.New(p.cfg.Kafka.Brokers, sc, p.cfg.StatusTopic, func(s string) {
		p.metrics.StatusMessages.WithLabelValues(s).Inc()
	})
}

func (p *Processor) reconciler(ctx context.Context, cl reconcile.Claims, reporter reconcile.Reporter, registry registry) (*reconcile.Reconciler, error) {
	verifier, err := p.verifier(ctx)
	if err != nil {
		return nil, err
	}
	src, err := sourcesapi.New(p.cfg.Sources.URL, p.cfg.Sources.Key(), p.cfg.Sources.Timeout, p.cfg.Sources.CAFile)
	if err != nil {
		return nil, err
	}
	return &reconcile.Reconciler{
		Sources:  instrumentedSources{src, p.metrics},
		Verifier: instrumentedVerifier{verifier, p.metrics},
		Registry: registry,
		Claims:   cl,
		Reporter: reporter,
	}, nil
}

func (p *Processor) periodic(cl periodic.Claimed) *periodic.Sweeper {
	return &periodic.Sweeper{
		Every: p.cfg.ReconcileEvery, Claims: cl, Log: p.log,
		Enqueue:  func(ctx context.Context, m work.Message) (bool, error) { return workstream.Publish(ctx, p.js, m) },
		Enqueued: p.metrics.PeriodicQueued.Inc,
	}
}

// serveStatusAPI puts the status API behind the private port's /api routes.
func (p *Processor) serveStatusAPI(ctx context.Context, js jetstream.JetStream, c *rhsm.Client) error {
	token := config.Secret(p.cfg.AdminToken, p.cfg.AdminTokenFile)
	api, err := StatusAPI(ctx, js, c, token, p.log.WithField("component", "statusapi"))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	api.Register(mux)
	p.api.set(mux)
	if token == "" {
		p.log.Warn("status API: no admin token (CLOUDOREG_ADMIN_TOKEN, CLOUDOREG_ADMIN_TOKEN_FILE), so admin access is off: only orgs can read their own sources")
	}
	return nil
}

func (p *Processor) workerConfig() worker.Config {
	c := p.cfg
	return worker.Config{
		Partitions:  c.Work.Partitions,
		AckWait:     c.AckWait,
		MaxDeliver:  c.MaxDeliver,
		InPlace:     c.RetryInPlace,
		Backoff:     backoff.Policy{Base: c.RetryBase, Max: c.RetryMax},
		Budget:      c.RetryBudget,
		ParkBackoff: backoff.Policy{Base: c.ParkBase, Max: c.ParkMax},
		SweepEvery:  c.SweepEvery,
	}
}

// shutdownServers stops the HTTP servers; ctx is the run's, whose
// cancellation is why they stop, so only its values are kept.
func (p *Processor) shutdownServers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = p.private.Shutdown(ctx)
	_ = p.ops.Shutdown(ctx)
}

// MetricFamilies names every metric family the processor can expose (the
// deploy checks hold alerts and dashboards to it).
func MetricFamilies() []string { return metrics.New().Families() }
