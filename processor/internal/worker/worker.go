// Package worker is the JetStream transport of the processor's work: one
// durable pull consumer per partition with MaxAckPending=1, so a source is
// never worked on twice at once, yet any processor replica can take any
// partition (README.md, "Decisions and why": "JetStream between them, keyed
// by source").
//
// Each message runs through the pipeline (retry in place, park,
// dead-letter, record, metrics, log around the reconcile) while InProgress
// keeps it alive, and is settled by the result. The worker also keeps the
// parked retries in KV and enqueues them when due (park.go), and copies
// dead letters, the server's max-deliveries give-ups included (dlq.go).
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/pipeline"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// Config tunes consumption and retries.
type Config struct {
	Partitions  int
	AckWait     time.Duration  // redelivery after a processor dies
	MaxDeliver  int            // deliveries before the advisory dead-letters a message
	InPlace     time.Duration  // in-place retry window: it holds up the partition
	Backoff     backoff.Policy // in-place retry delays
	Budget      time.Duration  // total time a source may keep failing transiently
	ParkBackoff backoff.Policy // delays between parked retries
	SweepEvery  time.Duration  // how often due parked retries are looked for
}

// Reconciler holds the business rules the pipeline runs.
type Reconciler interface {
	Reconcile(ctx context.Context, m work.Message) (reconcile.Outcome, error)
	// GiveUp tells the customer about work whose retry budget is spent.
	GiveUp(ctx context.Context, m work.Message, cause error) (reconcile.Outcome, error)
}

// Deps are what a worker needs.
type Deps struct {
	Config     Config
	JetStream  jetstream.JetStream
	Reconciler Reconciler
	Outcomes   pipeline.Outcomes
	Parked     jetstream.KeyValue // OpenParked
	Metrics    *metrics.Metrics
	Log        *logrus.Entry
}

// Worker consumes the work stream.
type Worker struct {
	cfg       Config
	js        jetstream.JetStream
	reconcile Reconciler
	outcomes  pipeline.Outcomes
	parked    parkedStore
	metrics   *metrics.Metrics
	log       *logrus.Entry

	consuming  []jetstream.ConsumeContext
	advisories *nats.Subscription
	inflight   sync.WaitGroup
	// workCtx bounds reconciles; it ends only when the shutdown grace is spent.
	workCtx    context.Context
	cancelWork context.CancelFunc
}

// New returns a worker. Start declares the consumers and starts consuming.
func New(d Deps) *Worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Worker{
		cfg: d.Config, js: d.JetStream, reconcile: d.Reconciler, outcomes: d.Outcomes, parked: parkedStore{d.Parked},
		metrics: d.Metrics, log: d.Log, workCtx: ctx, cancelWork: cancel,
	}
}

// ConsumerConfig is the durable consumer of partition p.
func ConsumerConfig(cfg Config, p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       workstream.ConsumerName(p),
		Description:   "Cloudoreg processors: one message of this partition at a time",
		FilterSubject: workstream.PartitionFilter(p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 1,
		MaxDeliver:    cfg.MaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Start subscribes to the max-deliveries advisory, dead-letters what the
// server gave up on while no processor listened, then declares (create or
// update) every partition consumer and starts pulling from all of them. In
// that order: the server gives up on an exhausted message at the next pull,
// and an advisory nobody hears is lost.
func (w *Worker) Start(ctx context.Context, nc *nats.Conn) error {
	sub, err := w.watchMaxDeliveries(nc)
	if err != nil {
		return fmt.Errorf("subscribe to max-deliveries advisories: %w", err)
	}
	w.advisories = sub
	w.deadLetterExhausted(ctx)
	for p := 0; p < w.cfg.Partitions; p++ {
		c, err := w.js.CreateOrUpdateConsumer(ctx, work.StreamName, ConsumerConfig(w.cfg, p))
		if err != nil {
			w.Stop(0)
			return fmt.Errorf("declare consumer %s: %w", workstream.ConsumerName(p), err)
		}
		cc, err := c.Consume(w.handle, jetstream.PullMaxMessages(1), jetstream.ConsumeErrHandler(w.consumeError))
		if err != nil {
			w.Stop(0)
			return fmt.Errorf("consume %s: %w", workstream.ConsumerName(p), err)
		}
		w.consuming = append(w.consuming, cc)
	}
	go w.sweep()
	return nil
}

func (w *Worker) consumeError(_ jetstream.ConsumeContext, err error) {
	if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, context.Canceled) {
		w.log.WithError(err).Debug("work consumer")
		return
	}
	w.log.WithError(err).Warn("work consumer error")
}

// Stop stops taking work, waits up to grace for reconciles in progress, then
// cancels the rest: their messages are handed back (Nak) for another replica.
func (w *Worker) Stop(grace time.Duration) {
	if w.advisories != nil {
		_ = w.advisories.Unsubscribe()
	}
	for _, cc := range w.consuming {
		cc.Stop()
	}
	done := make(chan struct{})
	go func() { w.inflight.Wait(); close(done) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		w.log.Warn("shutdown grace spent: handing back work in progress")
		w.cancelWork()
		// Reconciles honour ctx; this bound only guards against one that
		// does not, so shutdown still ends.
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			w.log.Error("work in progress did not stop; exiting anyway (it will be redelivered)")
		}
	}
	w.cancelWork()
}

// handle processes one work message.
func (w *Worker) handle(msg jetstream.Msg) {
	w.inflight.Add(1)
	defer w.inflight.Done()
	ctx := w.workCtx
	m, err := workstream.Decode(msg.Headers())
	if err != nil {
		w.deadLetterUndecodable(ctx, msg, err)
		return
	}
	log := w.logOf(msg).WithFields(logrus.Fields{
		"kind": m.Kind, "source_id": m.SourceID, "application_id": m.ApplicationID,
		"org_id": m.Tenant.OrgID, "origin": m.Origin,
	})
	stop := heartbeat(msg, w.cfg.AckWait/3)
	defer stop()
	_, err = w.chain(msg, log)(ctx, m)
	w.settle(ctx, log, msg, err)
}

// logOf is the log of msg's work, naming its place in the stream.
func (w *Worker) logOf(msg jetstream.Msg) *logrus.Entry {
	meta, err := msg.Metadata()
	if err != nil {
		return w.log
	}
	return w.log.WithFields(logrus.Fields{"nats_stream_seq": meta.Sequence.Stream, "deliveries": meta.NumDelivered})
}

// chain is the work of one message, built for it: the dead-letter copy
// is of this message, and the log names it. The order is the one the
// pipeline package documents, outermost first.
func (w *Worker) chain(msg jetstream.Msg, log *logrus.Entry) pipeline.Handler {
	return pipeline.Chain(w.reconcile.Reconcile,
		pipeline.Log(log),
		pipeline.Metrics(w.metrics),
		pipeline.Record(w.outcomes, w.metrics.PeriodicRepairs, log),
		pipeline.DeadLetter(w.copier(msg), w.reconcile.GiveUp),
		pipeline.Park(w.parked, w.cfg.Budget, w.cfg.ParkBackoff, time.Now),
		pipeline.RetryInPlace(w.cfg.InPlace, w.cfg.Backoff, pipeline.ObserveRetries(w.metrics, log)),
	)
}

// settle tells the server what became of the message: handed back at once
// on shutdown, acknowledged when done (or parked), terminated when
// dead-lettered, and otherwise handed back for a redelivery after a delay.
func (w *Worker) settle(ctx context.Context, log *logrus.Entry, msg jetstream.Msg, err error) {
	switch {
	case ctx.Err() != nil:
		_ = msg.Nak()
		log.Info("work handed back on shutdown")
	case err == nil:
		if err := msg.Ack(); err != nil {
			log.WithError(err).Warn("ack failed: the message will be redelivered and reconciled again")
		}
	case errors.Is(err, pipeline.ErrDeadLettered):
		if err := msg.Term(); err != nil {
			log.WithError(err).Warn("terminating a dead-lettered message failed")
		}
	default:
		_ = msg.NakWithDelay(w.cfg.Backoff.Max)
	}
}

// heartbeat tells the server the message is still being worked on, so it
// is not redelivered to another processor while a slow call runs.
func heartbeat(msg jetstream.Msg, every time.Duration) (stop func()) {
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}
