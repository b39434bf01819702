package pipeline

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// result is what an inner handler returns.
type result struct {
	o   reconcile.Outcome
	err error
}

// inner is a plain handler returning results in turn (the last one
// repeated) and counting its calls.
type inner struct {
	results []result
	calls   int
}

func (h *inner) handle(context.Context, work.Message) (reconcile.Outcome, error) {
	r := h.results[min(h.calls, len(h.results)-1)]
	h.calls++
	return r.o, r.err
}

func returns(o reconcile.Outcome, err error) *inner { return &inner{results: []result{{o, err}}} }

// entries records every log entry.
type entries struct {
	mu  sync.Mutex
	got []*logrus.Entry
}

func (e *entries) Levels() []logrus.Level { return logrus.AllLevels }

func (e *entries) Fire(entry *logrus.Entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, entry)
	return nil
}

func testLog() (*logrus.Entry, *entries) {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	h := &entries{}
	l.AddHook(h)
	return logrus.NewEntry(l), h
}

// parkStore records parks and clears; park fails with err when set.
type parkStore struct {
	err     error
	parked  []Parked
	cleared []string
}

func (s *parkStore) Park(_ context.Context, p Parked) error {
	if s.err != nil {
		return s.err
	}
	s.parked = append(s.parked, p)
	return nil
}

func (s *parkStore) Clear(_ context.Context, sourceID string) {
	s.cleared = append(s.cleared, sourceID)
}

// outcomeStore is an in-memory Outcomes; Put fails with err, Get with
// getErr, when set.
type outcomeStore struct {
	err     error
	getErr  error
	records map[string]outcomes.Record
	gets    int
}

func newOutcomeStore() *outcomeStore { return &outcomeStore{records: map[string]outcomes.Record{}} }

func (s *outcomeStore) Get(_ context.Context, id string) (outcomes.Record, error) {
	s.gets++
	if s.getErr != nil {
		return outcomes.Record{}, s.getErr
	}
	r, ok := s.records[id]
	if !ok {
		return r, outcomes.ErrNotFound
	}
	return r, nil
}

func (s *outcomeStore) Put(_ context.Context, id string, r outcomes.Record) error {
	if s.err != nil {
		return s.err
	}
	s.records[id] = r
	return nil
}

func counterValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	_ = (<-ch).Write(&m)
	if m.Histogram != nil {
		return float64(m.Histogram.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

var (
	errKV = errors.New("KV unavailable")
	// now is the pipeline's clock in tests.
	now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// message is a work message of an event on source 9 and application 21,
// on its attempt-th delivery overall.
func message(attempt int) work.Message {
	return work.Message{
		Kind: string(event.AuthUpdate), SourceID: "9", ApplicationID: "21", AuthenticationID: "41",
		Tenant: event.Tenant{OrgID: "o1", AccountNumber: "a1"}, Identity: "eyJpZGVudGl0eSI6e319",
		Origin: "platform.sources.event-stream/0/7", Attempt: attempt,
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
