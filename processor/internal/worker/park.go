package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// ParkedBucket is the KV bucket of parked retries: at most one per source.
const ParkedBucket = "CLOUDOREG_RETRIES"

// OpenParked creates or updates the parked-retries bucket.
func OpenParked(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ParkedBucket,
		Description: "Cloudoreg: due retries of sources whose reconcile keeps failing transiently (source.<id>)",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("declare KV %s: %w", ParkedBucket, err)
	}
	return kv, nil
}

// parkedRetry is a retry due at Due. It keeps the work message (with the
// identity, which a later status message must carry) and the budget so far.
type parkedRetry struct {
	Due          time.Time `json:"due"`
	Attempt      int       `json:"attempt"`
	FirstFailure time.Time `json:"first_failure"`
	Kind         string    `json:"kind"`
	SourceID     string    `json:"source_id"`
	Application  string    `json:"application_id,omitempty"`
	Auth         string    `json:"authentication_id,omitempty"`
	OrgID        string    `json:"org_id,omitempty"`
	Account      string    `json:"account_number,omitempty"`
	Identity     string    `json:"identity,omitempty"`
}

func parkedKey(sourceID string) string { return "source." + sourceID }

// parkOrGiveUp parks the source for a later retry and acks the message, or
// gives up when the budget is spent.
func (w *Worker) parkOrGiveUp(ctx context.Context, log *logrus.Entry, msg jetstream.Msg, m work.Message, cause error, attempts int) {
	first := m.FirstFailure
	if first.IsZero() {
		first = time.Now().UTC()
	}
	total := m.Attempt + attempts
	if time.Since(first) >= w.cfg.Budget {
		w.giveUp(ctx, log, msg, m, cause, attempts)
		return
	}
	due := time.Now().Add(w.cfg.ParkBackoff.Delay(total)).UTC()
	p := parkedRetry{
		Due: due, Attempt: total, FirstFailure: first, Kind: m.Kind, SourceID: m.SourceID,
		Application: m.ApplicationID, Auth: m.AuthenticationID, OrgID: m.Tenant.OrgID,
		Account: m.Tenant.AccountNumber, Identity: m.Identity,
	}
	b, _ := json.Marshal(p)
	if _, err := w.parked.Put(ctx, parkedKey(m.SourceID), b); err != nil {
		// Cannot park: keep the message and let the server redeliver it.
		log.WithError(err).Warn("parking failed; the message will be redelivered")
		_ = msg.NakWithDelay(w.cfg.Backoff.Max)
		return
	}
	w.metrics.Parked.Inc()
	w.record(ctx, m, outcomes.Record{State: "retrying", Reason: cause.Error(), ApplicationID: m.ApplicationID, Attempts: total})
	log.WithError(cause).WithFields(logrus.Fields{"attempts": total, "retry_at": due}).Warn("transient failure persists: source parked, retry scheduled")
	if err := msg.Ack(); err != nil {
		log.WithError(err).Warn("ack failed: the message will be redelivered")
	}
}

// clearParked drops a source's pending retry once a reconcile reached an
// outcome. A retry that fires anyway only reconciles again: harmless.
func (w *Worker) clearParked(ctx context.Context, sourceID string) {
	e, err := w.parked.Get(ctx, parkedKey(sourceID))
	if err != nil {
		return
	}
	_ = w.parked.Delete(ctx, parkedKey(sourceID), jetstream.LastRevision(e.Revision()))
}

// sweep enqueues due parked retries until the worker stops.
func (w *Worker) sweep() {
	t := time.NewTicker(w.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-w.workCtx.Done():
			return
		case <-t.C:
			if err := w.enqueueDue(w.workCtx); err != nil && w.workCtx.Err() == nil {
				w.log.WithError(err).Warn("sweeping parked retries failed")
			}
		}
	}
}

// enqueueDue publishes a reconcile for every due parked retry. Several
// processors may sweep at once: the message id (source and the parked
// entry's revision, unique per parked episode) makes their publishes one,
// and the revision-checked delete keeps a newer park.
func (w *Worker) enqueueDue(ctx context.Context) error {
	lister, err := w.parked.ListKeys(ctx)
	if err != nil {
		return err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if err := w.enqueueIfDue(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func (w *Worker) enqueueIfDue(ctx context.Context, key string) error {
	e, err := w.parked.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	var p parkedRetry
	if err := json.Unmarshal(e.Value(), &p); err != nil || !strings.HasSuffix(key, "."+p.SourceID) {
		w.log.WithField("key", key).Warn("dropping an unreadable parked retry")
		return w.parked.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	}
	if time.Now().Before(p.Due) {
		return nil
	}
	m := work.Message{
		Kind: p.Kind, SourceID: p.SourceID, ApplicationID: p.Application, AuthenticationID: p.Auth,
		Identity: p.Identity, Attempt: p.Attempt, FirstFailure: p.FirstFailure,
		Origin: fmt.Sprintf("retry/%s/%d", p.SourceID, e.Revision()),
	}
	m.Tenant.OrgID, m.Tenant.AccountNumber = p.OrgID, p.Account
	log := w.log.WithFields(logrus.Fields{"source_id": p.SourceID, "attempt": p.Attempt, "origin": m.Origin})
	duplicate, err := workstream.Publish(ctx, w.js, m)
	if err != nil {
		return err
	}
	if duplicate {
		// This very episode is already in the stream (another sweeper, or
		// this one before a failed delete): keep the entry; whoever stored
		// it deletes it, or a later sweep after the duplicate window does.
		w.metrics.RetryDuplicates.Inc()
		log.Info("parked retry due: already enqueued (duplicate), entry kept")
		return nil
	}
	w.metrics.RetriesEnqueued.Inc()
	log.Info("parked retry due: reconcile enqueued")
	err = w.parked.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !isWrongRevision(err) {
		return err
	}
	return nil
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
