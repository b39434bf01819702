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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
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

// Reconciler runs one reconcile.
type Reconciler interface {
	Reconcile(ctx context.Context, m work.Message) (reconcile.Outcome, error)
	// ApplicationID resolves the application to report on for work that
	// names none.
	ApplicationID(ctx context.Context, m work.Message) (string, error)
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

	consuming  []jetstream.ConsumeContext
	advisories *nats.Subscription
	inflight   sync.WaitGroup
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
	started := time.Now()
	ctx := w.workCtx
	m, err := workstream.Decode(msg.Headers())
	if err != nil {
		w.deadLetter(ctx, msg, failure.ReasonUndecodable, err)
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
		reason := failure.ReasonOf(err)
		if reason == "" {
			reason = failure.ReasonInternal
		}
		w.deadLetter(ctx, msg, reason, err)
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
	if m.Kind == work.KindReconcile {
		w.countRepairs(ctx, log, m.SourceID, o)
	}
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

// countRepairs counts what a periodic reconcile repaired, by comparing its
// outcome with the source's last recorded one (what the events before it
// left; no record counts as anything else):
//   - removed: it ends removed and the record did not say removed (the
//     source held a claim, so a registration was left behind);
//   - re-registered: it ends available and the record did not say
//     available with the same AWS account;
//   - status re-sent: it ends available or unavailable and the record said
//     another state or code (the customer saw something else).
func (w *Worker) countRepairs(ctx context.Context, log *logrus.Entry, sourceID string, o reconcile.Outcome) {
	prev, _ := w.outcomes.Get(ctx, sourceID)
	var repairs []string
	if o.State == reconcile.StateRemoved && prev.State != string(reconcile.StateRemoved) {
		repairs = append(repairs, metrics.RepairRemoved)
	}
	if o.State == reconcile.StateAvailable && (prev.State != string(o.State) || prev.AccountID != o.AccountID) {
		repairs = append(repairs, metrics.RepairReregistered)
	}
	reported := o.State == reconcile.StateAvailable || o.State == reconcile.StateUnavailable
	if reported && (prev.State != string(o.State) || prev.Code != string(o.Code)) {
		repairs = append(repairs, metrics.RepairStatusResent)
	}
	for _, r := range repairs {
		w.metrics.PeriodicRepairs.WithLabelValues(r).Inc()
	}
	if len(repairs) > 0 {
		log.WithFields(logrus.Fields{"repairs": repairs, "recorded_state": prev.State, "recorded_code": prev.Code}).Warn("periodic reconcile repaired what an event had left")
	}
}

// giveUp dead-letters the message so an operator can replay it, then
// reports CG3000 (in that order: when the customer sees the error, the
// dead letter already exists). A failure an operator must fix (a refused
// PSK) is dead-lettered with its own reason and never reported: it is not
// the customer's, and a replay after the fix reconciles the source.
func (w *Worker) giveUp(ctx context.Context, log *logrus.Entry, msg jetstream.Msg, m work.Message, cause error, attempts int) {
	total := m.Attempt + attempts
	var seq, deliveries uint64
	if meta, err := msg.Metadata(); err == nil {
		seq, deliveries = meta.Sequence.Stream, meta.NumDelivered
	}
	reason := failure.ReasonOf(cause)
	if reason == "" {
		reason = failure.ReasonBudgetSpent
	}
	detail := fmt.Errorf("retry budget spent after %d attempts: %w", total, cause)
	if err := w.copyToDLQ(ctx, msg.Subject(), msg.Headers(), msg.Data(), seq, deliveries, reason, detail); err != nil {
		log.WithError(err).Error("retry budget spent but dead-lettering failed; handing the message back")
		_ = msg.NakWithDelay(w.cfg.Backoff.Max)
		return
	}
	w.clearParked(ctx, m.SourceID)
	if reason == failure.ReasonBudgetSpent {
		appID, reported := w.reportBudgetSpent(ctx, m, cause)
		w.record(ctx, m, outcomes.Record{State: string(reconcile.StateUnavailable), Code: string(status.CG3000), Reason: "retry budget spent", ApplicationID: appID, Attempts: total})
		w.metrics.Work.WithLabelValues(kindLabel(m.Kind), string(reconcile.StateUnavailable), string(status.CG3000)).Inc()
		log.WithError(cause).WithField("attempts", total).Error("retry budget spent, message dead-lettered: " + reported)
	} else {
		w.record(ctx, m, outcomes.Record{State: "dead_lettered", Reason: string(reason), ApplicationID: m.ApplicationID, Attempts: total})
		log.WithError(cause).WithFields(logrus.Fields{"attempts": total, "reason": reason}).Error("retry budget spent on a problem an operator must fix: message dead-lettered, nothing reported to the customer; replay it after the fix")
	}
	if err := msg.Term(); err != nil {
		log.WithError(err).Warn("terminating a dead-lettered message failed")
	}
}

// reportBudgetSpent tells the customer CG3000 on the work's application, or
// on the source's cloud-meter application for work that names none (an
// availability check). It returns the application and what was done.
func (w *Worker) reportBudgetSpent(ctx context.Context, m work.Message, cause error) (appID, reported string) {
	appID = m.ApplicationID
	if appID == "" {
		if failure.TargetOf(cause) == "sources" {
			return "", "no application to report on: Sources, which names it, is the failing dependency"
		}
		var err error
		if appID, err = w.reconcile.ApplicationID(ctx, m); err != nil {
			return "", "no application to report on: resolving it in Sources failed: " + err.Error()
		}
		if appID == "" {
			return "", "no application to report on: the source has no cloud-meter application"
		}
	}
	if err := w.reporter.Report(ctx, m, status.UnavailableMessage(appID, status.CG3000)); err != nil {
		return appID, "reporting CG3000 failed too: " + err.Error()
	}
	return appID, "reported CG3000"
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
	if event.Routed(kind) || kind == work.KindCheck || kind == work.KindReconcile {
		return kind
	}
	return "other"
}
