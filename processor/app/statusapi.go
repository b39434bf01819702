package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi"
	"github.com/cloudoreg/cloudoreg/processor/internal/worker"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// The adapters between the status API and JetStream and RHSM. How the
// worker stores parked retries and dead letters is read here and only here.

// StatusAPI builds the status API over the declared streams and buckets
// (the processor serves it on its private port; tests on their own).
func StatusAPI(ctx context.Context, js jetstream.JetStream, registry *rhsm.Client, adminToken string, log *logrus.Entry) (*statusapi.API, error) {
	out, err := js.KeyValue(ctx, outcomes.Bucket)
	if err != nil {
		return nil, fmt.Errorf("KV %s: %w", outcomes.Bucket, err)
	}
	parked, err := js.KeyValue(ctx, worker.ParkedBucket)
	if err != nil {
		return nil, fmt.Errorf("KV %s: %w", worker.ParkedBucket, err)
	}
	return &statusapi.API{
		Outcomes:      outcomeReader{outcomes.New(out)},
		Parked:        parkedReader{parked},
		Registrations: registrations{registry},
		DeadLetters:   deadLetters{js},
		Reconciles:    reconciles{js},
		AdminToken:    adminToken,
		Log:           log,
	}, nil
}

// lateHandler answers 503 until the processor has connected to NATS and
// declared what the API reads.
type lateHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lateHandler) set(h http.Handler) { l.h.Store(&h) }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(`{"error":"the processor is starting: not connected to NATS yet"}` + "\n"))
}

type outcomeReader struct{ s *outcomes.Store }

func (o outcomeReader) Outcome(ctx context.Context, sourceID string) (statusapi.Outcome, error) {
	r, err := o.s.Get(ctx, sourceID)
	if errors.Is(err, outcomes.ErrNotFound) {
		return statusapi.Outcome{}, statusapi.ErrNotFound
	}
	if err != nil {
		return statusapi.Outcome{}, err
	}
	return statusapi.Outcome{
		OrgID: r.OrgID, State: r.State, Code: r.Code, Reason: r.Reason, ApplicationID: r.ApplicationID,
		AccountID: r.AccountID, Attempts: r.Attempts, EventType: r.LastEvent, Origin: r.Origin, Time: r.Time,
	}, nil
}

// parkedEntry is the part of the worker's parked-retry entry the API shows.
type parkedEntry struct {
	Due          time.Time `json:"due"`
	Attempt      int       `json:"attempt"`
	FirstFailure time.Time `json:"first_failure"`
	Kind         string    `json:"kind"`
	SourceID     string    `json:"source_id"`
	OrgID        string    `json:"org_id"`
}

type parkedReader struct{ kv jetstream.KeyValue }

func (p parkedReader) ParkedRetry(ctx context.Context, sourceID string) (statusapi.ParkedRetry, error) {
	return p.read(ctx, "source."+sourceID)
}

func (p parkedReader) read(ctx context.Context, key string) (statusapi.ParkedRetry, error) {
	e, err := p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return statusapi.ParkedRetry{}, statusapi.ErrNotFound
	}
	if err != nil {
		return statusapi.ParkedRetry{}, err
	}
	var v parkedEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		// The sweeper drops such an entry; until then there is nothing to show.
		return statusapi.ParkedRetry{}, statusapi.ErrNotFound
	}
	return statusapi.ParkedRetry{
		SourceID: v.SourceID, OrgID: v.OrgID, EventType: v.Kind, Attempts: v.Attempt, Due: v.Due, FirstFailure: v.FirstFailure,
	}, nil
}

// ParkedRetries lists every parked retry, soonest due first.
func (p parkedReader) ParkedRetries(ctx context.Context) ([]statusapi.ParkedRetry, error) {
	lister, err := p.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	list := []statusapi.ParkedRetry{}
	for _, k := range keys {
		r, err := p.read(ctx, k)
		if errors.Is(err, statusapi.ErrNotFound) {
			continue // retried or cleared since the listing
		}
		if err != nil {
			return nil, err
		}
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b statusapi.ParkedRetry) int { return a.Due.Compare(b.Due) })
	return list, nil
}

type registrations struct{ c *rhsm.Client }

func (g registrations) Registrations(ctx context.Context, orgID, sourceID string) ([]statusapi.Registration, error) {
	accts, err := g.c.Enabled(ctx, orgID)
	if err != nil {
		return nil, err
	}
	var out []statusapi.Registration
	for _, a := range accts {
		if a.SourceID == sourceID {
			out = append(out, statusapi.Registration{AccountID: a.ID, Verified: a.Verified})
		}
	}
	return out, nil
}

type reconciles struct{ js jetstream.JetStream }

// Reconcile enqueues a check: re-verify and report, like Sources' own. The
// origin is unique so that no deduplication of checks swallows it.
func (r reconciles) Reconcile(ctx context.Context, sourceID, orgID string) error {
	m := work.Message{Kind: work.KindCheck, SourceID: sourceID, Origin: "operator/" + strconv.FormatInt(time.Now().UnixNano(), 10)}
	m.Tenant.OrgID = orgID
	_, err := workstream.Publish(ctx, r.js, m)
	return err
}

// deadLetters reads the dead-letter stream as the worker writes it.
type deadLetters struct{ js jetstream.JetStream }

// dlqHeaderPrefix starts the headers the worker adds to a dead letter.
const dlqHeaderPrefix = "Cloudoreg-Dlq-"

func (d deadLetters) stream(ctx context.Context) (jetstream.Stream, error) {
	return d.js.Stream(ctx, work.DLQStreamName)
}

// next reads the first dead letter at or after seq.
func (d deadLetters) next(ctx context.Context, s jetstream.Stream, seq uint64) (*jetstream.RawStreamMsg, error) {
	m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(work.DLQPrefix+">"))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, statusapi.ErrNotFound
	}
	return m, err
}

func (d deadLetters) DeadLetters(ctx context.Context, after uint64, limit int) ([]statusapi.DeadLetter, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	var out []statusapi.DeadLetter
	for seq := after + 1; len(out) < limit; {
		m, err := d.next(ctx, s, seq)
		if errors.Is(err, statusapi.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		out = append(out, letterOf(m))
		seq = m.Sequence + 1
	}
	return out, nil
}

func (d deadLetters) DeadLetter(ctx context.Context, seq uint64) (statusapi.DeadLetter, error) {
	m, err := d.get(ctx, seq)
	if err != nil {
		return statusapi.DeadLetter{}, err
	}
	return letterOf(m), nil
}

func (d deadLetters) get(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, statusapi.ErrNotFound
	}
	return m, err
}

func letterOf(m *jetstream.RawStreamMsg) statusapi.DeadLetter {
	h := m.Header
	deliveries, _ := strconv.Atoi(h.Get(worker.HeaderDLQDeliveries))
	workSeq, _ := strconv.ParseUint(h.Get(worker.HeaderDLQStreamSeq), 10, 64)
	return statusapi.DeadLetter{
		Seq: m.Sequence, SourceID: h.Get(workstream.HeaderSourceID), OrgID: h.Get(workstream.HeaderOrgID),
		Reason: h.Get(worker.HeaderDLQReason), Detail: h.Get(worker.HeaderDLQDetail), Deliveries: deliveries,
		Time: m.Time.UTC(), EventType: h.Get(workstream.HeaderKind), Origin: h.Get(workstream.HeaderOrigin), WorkSeq: workSeq,
	}
}

// Replay republishes the dead letter's work message (its headers but the
// dead letter's own, with the message id replay/<seq>) to the source's work
// subject, then deletes the dead letter. A replay whose delete failed is
// stored once only: the next replay is a duplicate and deletes it.
func (d deadLetters) Replay(ctx context.Context, seq uint64) (statusapi.Replayed, error) {
	m, err := d.get(ctx, seq)
	if err != nil {
		return statusapi.Replayed{}, err
	}
	h := nats.Header{}
	for k, v := range m.Header {
		if !strings.HasPrefix(k, dlqHeaderPrefix) && k != jetstream.MsgIDHeader {
			h[k] = v
		}
	}
	w, err := workstream.Decode(h)
	if err != nil {
		return statusapi.Replayed{}, fmt.Errorf("%w: %w", statusapi.ErrNotReplayable, err)
	}
	h.Set(jetstream.MsgIDHeader, "replay/"+strconv.FormatUint(seq, 10))
	ack, err := d.js.PublishMsg(ctx, &nats.Msg{Subject: work.Subject(w.SourceID), Header: h, Data: m.Data})
	if err != nil {
		return statusapi.Replayed{}, fmt.Errorf("republish: %w", err)
	}
	s, err := d.stream(ctx)
	if err == nil {
		err = s.DeleteMsg(ctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return statusapi.Replayed{}, fmt.Errorf("republished as work %d, but deleting the dead letter failed (replay again to delete it): %w", ack.Sequence, err)
	}
	return statusapi.Replayed{WorkSeq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Purge deletes, oldest first, the dead letters stored before cutoff.
func (d deadLetters) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	s, err := d.stream(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for seq := uint64(1); ; {
		m, err := d.next(ctx, s, seq)
		if errors.Is(err, statusapi.ErrNotFound) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if !m.Time.Before(cutoff) {
			return n, nil
		}
		if err := s.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, err
		}
		n++
		seq = m.Sequence + 1
	}
}
