// Package worker takes work from the JetStream work stream and runs
// reconciles: one durable pull consumer per partition with MaxAckPending=1,
// so a source is never worked on twice at once, yet any processor replica
// can take any partition (README.md, "Decisions and why": "JetStream between
// them, keyed by source").
//
// Transient failures are retried in place for a short window while the
// message is kept alive with InProgress, then the source is parked (a due
// retry in KV, see park.go) and the message acked so the partition moves
// on. Failures of Cloudoreg's own go to the dead-letter stream (dlq.go).
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/failure"
	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
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

// Reconciler runs one reconcile.
type Reconciler interface {
	Reconcile(ctx context.Context, m work.Message) (reconcile.Outcome, error)
}

// Worker consumes the work stream.
type Worker struct {
	cfg       Config
	js        jetstream.JetStream
	reconcile Reconciler
	reporter  reconcile.Reporter
	outcomes  *outcomes.Store
	parked    jetstream.KeyValue
	metrics   *metrics.Metrics
	log       *logrus.Entry

	consuming []jetstream.ConsumeContext
	inflight  sync.WaitGroup
	// workCtx bounds reconciles; it ends only when the shutdown grace is spent.
	workCtx    context.Context
	cancelWork context.CancelFunc
}

// New returns a worker. Start declares the consumers and starts consuming.
func New(cfg Config, js jetstream.JetStream, r Reconciler, reporter reconcile.Reporter, out *outcomes.Store, parked jetstream.KeyValue, m *metrics.Metrics, log *logrus.Entry) *Worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Worker{cfg: cfg, js: js, reconcile: r, reporter: reporter, outcomes: out, parked: parked, metrics: m, log: log, workCtx: ctx, cancelWork: cancel}
}

// ConsumerConfig is the durable consumer of partition p.
func ConsumerConfig(cfg Config, p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       work.ConsumerName(p),
		Description:   "Cloudoreg processors: one message of this partition at a time",
		FilterSubject: work.PartitionFilter(p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 1,
		MaxDeliver:    cfg.MaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Start declares (create or update) every partition consumer and starts
// pulling from all of them.
func (w *Worker) Start(ctx context.Context) error {
	for p := 0; p < w.cfg.Partitions; p++ {
		c, err := w.js.CreateOrUpdateConsumer(ctx, work.StreamName, ConsumerConfig(w.cfg, p))
		if err != nil {
			w.Stop(0)
			return fmt.Errorf("declare consumer %s: %w", work.ConsumerName(p), err)
		}
		cc, err := c.Consume(w.handle, jetstream.PullMaxMessages(1), jetstream.ConsumeErrHandler(w.consumeError))
		if err != nil {
			w.Stop(0)
			return fmt.Errorf("consume %s: %w", work.ConsumerName(p), err)
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
	started := time.Now()
	ctx := w.workCtx
	m, err := work.Decode(msg.Headers())
	if err != nil {
		w.deadLetter(ctx, msg, "undecodable", err)
		return
	}
	log := w.log.WithFields(logrus.Fields{
		"kind": m.Kind, "source_id": m.SourceID, "application_id": m.ApplicationID,
		"org_id": m.Tenant.OrgID, "origin": m.Origin,
	})
	if meta, err := msg.Metadata(); err == nil {
		log = log.WithFields(logrus.Fields{"nats_stream_seq": meta.Sequence.Stream, "deliveries": meta.NumDelivered})
	}
	stop := heartbeat(msg, w.cfg.AckWait/3)
	defer stop()

	o, attempts, err := w.attempt(ctx, log, m)
	switch {
	case ctx.Err() != nil:
		// Shutting down: hand the message back at once.
		_ = msg.Nak()
		log.Info("work handed back on shutdown")
		return
	case err == nil:
		w.finished(ctx, log, msg, m, o, attempts)
	case failure.IsTransient(err):
		w.parkOrGiveUp(ctx, log, msg, m, err, attempts)
	default:
		w.deadLetter(ctx, msg, "internal", err)
	}
	w.metrics.WorkSeconds.Observe(time.Since(started).Seconds())
}

// attempt reconciles, retrying transient failures in place within the window.
func (w *Worker) attempt(ctx context.Context, log *logrus.Entry, m work.Message) (reconcile.Outcome, int, error) {
	deadline := time.Now().Add(w.cfg.InPlace)
	for n := 1; ; n++ {
		o, err := w.reconcile.Reconcile(ctx, m)
		if err == nil || !failure.IsTransient(err) || ctx.Err() != nil {
			return o, n, err
		}
		w.metrics.Retries.WithLabelValues(failure.TargetOf(err)).Inc()
		delay := w.cfg.Backoff.Delay(n)
		if time.Now().Add(delay).After(deadline) {
			return o, n, err
		}
		entry := log.WithError(err).WithField("attempt", n)
		if errors.Is(err, failure.ErrConfiguration) {
			entry.Error("transient failure caused by Cloudoreg's configuration, retrying in place")
		} else {
			entry.Warn("transient failure, retrying in place")
		}
		if backoff.Sleep(ctx, delay) != nil {
			return o, n, ctx.Err()
		}
	}
}

// finished acks a message whose reconcile reached an outcome.
func (w *Worker) finished(ctx context.Context, log *logrus.Entry, msg jetstream.Msg, m work.Message, o reconcile.Outcome, attempts int) {
	w.clearParked(ctx, m.SourceID)
	w.record(ctx, m, outcomes.Record{State: string(o.State), Code: string(o.Code), ApplicationID: o.ApplicationID, AccountID: o.AccountID, Attempts: m.Attempt + attempts})
	w.metrics.Work.WithLabelValues(kindLabel(m.Kind), string(o.State), string(o.Code)).Inc()
	entry := log.WithFields(logrus.Fields{"state": o.State, "attempts": m.Attempt + attempts})
	if o.Code != "" {
		entry = entry.WithFields(logrus.Fields{"code": o.Code, "cause": fmt.Sprint(o.Cause)})
	}
	entry.Info("source reconciled")
	if err := msg.Ack(); err != nil {
		log.WithError(err).Warn("ack failed: the message will be redelivered and reconciled again")
	}
}

// giveUp dead-letters the message so an operator can replay it, then
// reports CG3000 (in that order: when the customer sees the error, the
// dead letter already exists).
func (w *Worker) giveUp(ctx context.Context, log *logrus.Entry, msg jetstream.Msg, m work.Message, cause error, attempts int) {
	total := m.Attempt + attempts
	var seq, deliveries uint64
	if meta, err := msg.Metadata(); err == nil {
		seq, deliveries = meta.Sequence.Stream, meta.NumDelivered
	}
	detail := fmt.Errorf("retry budget spent after %d attempts: %w", total, cause)
	if err := w.copyToDLQ(ctx, msg.Subject(), msg.Headers(), msg.Data(), seq, deliveries, "budget_spent", detail); err != nil {
		log.WithError(err).Error("retry budget spent but dead-lettering failed; handing the message back")
		_ = msg.NakWithDelay(w.cfg.Backoff.Max)
		return
	}
	reported := "no application id to report on"
	if m.ApplicationID != "" {
		if err := w.reporter.Report(ctx, m, status.UnavailableMessage(m.ApplicationID, status.CG3000)); err != nil {
			reported = "reporting CG3000 failed too: " + err.Error()
		} else {
			reported = "reported CG3000"
		}
	}
	w.clearParked(ctx, m.SourceID)
	w.record(ctx, m, outcomes.Record{State: string(reconcile.StateUnavailable), Code: string(status.CG3000), Reason: "retry budget spent", ApplicationID: m.ApplicationID, Attempts: total})
	w.metrics.Work.WithLabelValues(kindLabel(m.Kind), string(reconcile.StateUnavailable), string(status.CG3000)).Inc()
	log.WithError(cause).WithField("attempts", total).Error("retry budget spent, message dead-lettered: " + reported)
	if err := msg.Term(); err != nil {
		log.WithError(err).Warn("terminating a dead-lettered message failed")
	}
}

func (w *Worker) record(ctx context.Context, m work.Message, r outcomes.Record) {
	r.OrgID, r.LastEvent, r.Origin, r.Time = m.Tenant.OrgID, m.Kind, m.Origin, time.Now().UTC()
	if err := w.outcomes.Put(ctx, m.SourceID, r); err != nil {
		w.log.WithError(err).WithField("source_id", m.SourceID).Warn("recording the outcome failed")
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

func kindLabel(kind string) string {
	if event.Routed(kind) || kind == work.KindCheck {
		return kind
	}
	return "other"
}
