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

	"github.com/cloudoreg/cloudoreg/processor/internal/pipeline"
	"github.com/cloudoreg/cloudoreg/shared/natsconn"
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

// parkedRetry is the KV form of a pipeline.Parked: a retry due at Due, with
// the work message (and its identity, which a later status message must
// carry) and the budget so far.
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

// parkedStore is the pipeline's ParkStore over the parked-retries bucket.
type parkedStore struct{ kv jetstream.KeyValue }

// Park stores p as the source's one parked retry.
func (s parkedStore) Park(ctx context.Context, p pipeline.Parked) error {
	m := p.Work
	b, err := json.Marshal(parkedRetry{
		Due: p.Due, Attempt: m.Attempt, FirstFailure: m.FirstFailure, Kind: m.Kind, SourceID: m.SourceID,
		Application: m.ApplicationID, Auth: m.AuthenticationID, OrgID: m.Tenant.OrgID,
		Account: m.Tenant.AccountNumber, Identity: m.Identity,
	})
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, parkedKey(m.SourceID), b)
	return err
}

// Clear drops a source's pending retry; only the revision read is deleted,
// so a newer park stays.
func (s parkedStore) Clear(ctx context.Context, sourceID string) {
	e, err := s.kv.Get(ctx, parkedKey(sourceID))
	if err != nil {
		return
	}
	_ = s.kv.Delete(ctx, parkedKey(sourceID), jetstream.LastRevision(e.Revision()))
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
	lister, err := w.parked.kv.ListKeys(ctx)
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
	e, err := w.parked.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return err
	}
	var p parkedRetry
	if err := json.Unmarshal(e.Value(), &p); err != nil || !strings.HasSuffix(key, "."+p.SourceID) {
		w.log.WithField("key", key).Warn("dropping an unreadable parked retry")
		return w.parked.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
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
	err = w.parked.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !natsconn.WrongRevision(err) {
		return err
	}
	return nil
}
