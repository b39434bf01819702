package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

const waitLimit = 90 * time.Second

// recorder stands in for the business logic: it records, per source, the
// order of work and whether two reconciles of a source ever overlapped.
type recorder struct {
	mu        sync.Mutex
	active    map[string]int
	order     map[string][]int
	finished  []string // sources in the order their reconciles succeeded
	overlaps  []string
	done      int
	doneCh    chan struct{}
	want      int
	hold      time.Duration
	transient map[string]int // source -> transient failures left
	block     chan struct{}  // when set, the first reconcile blocks until closed
	blocked   chan struct{}
}

func newRecorder(want int, hold time.Duration) *recorder {
	return &recorder{active: map[string]int{}, order: map[string][]int{}, doneCh: make(chan struct{}), want: want, hold: hold, transient: map[string]int{}}
}

func (r *recorder) Reconcile(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
	r.mu.Lock()
	r.active[m.SourceID]++
	if r.active[m.SourceID] > 1 {
		r.overlaps = append(r.overlaps, m.SourceID)
	}
	block := r.block
	r.block = nil
	r.mu.Unlock()
	if block != nil {
		close(r.blocked)
		<-block
	}
	if r.hold > 0 {
		time.Sleep(r.hold) // simulated work: widens any overlap window
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[m.SourceID]--
	if r.transient[m.SourceID] > 0 {
		r.transient[m.SourceID]--
		return reconcile.Outcome{}, failure.Transient("sts", fmt.Errorf("throttled"))
	}
	n, _ := strconv.Atoi(m.ApplicationID) // the sequence number of the test event
	r.order[m.SourceID] = append(r.order[m.SourceID], n)
	r.finished = append(r.finished, m.SourceID)
	r.done++
	if r.done == r.want {
		close(r.doneCh)
	}
	return reconcile.Outcome{State: reconcile.StateAvailable}, nil
}

// reconciler is the reconcile rule a test stands in for.
type reconciler interface {
	Reconcile(ctx context.Context, m work.Message) (reconcile.Outcome, error)
}

// giveUps stands in for reconcile's GiveUp: it tells CG3000 on the work's
// application and records what it told, and how many dead letters the
// stream held by then (the dead letter comes first, the customer second).
type giveUps struct {
	mu   sync.Mutex
	js   jetstream.JetStream
	sent []status.Message
	dead []uint64
}

func (g *giveUps) GiveUp(ctx context.Context, m work.Message, cause error) (reconcile.Outcome, error) {
	var dead uint64
	if dlq, err := g.js.Stream(ctx, work.DLQStreamName); err == nil {
		if info, err := dlq.Info(ctx); err == nil {
			dead = info.State.Msgs
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent = append(g.sent, status.UnavailableMessage(m.ApplicationID, status.CG3000))
	g.dead = append(g.dead, dead)
	return reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3000, ApplicationID: m.ApplicationID, Reason: "retry budget spent", Cause: cause}, nil
}

// rules are a test's reconcile rules as the worker takes them.
type rules struct {
	reconciler
	*giveUps
}

type testEnv struct {
	t  *testing.T
	ns *server.Server
}

func newTestEnv(t *testing.T, partitions int) *testEnv {
	t.Helper()
	e := &testEnv{t: t, ns: testkit.NATSServer(t)}
	js := e.connect()
	if err := workstream.EnsureStreams(context.Background(), js, workstream.StreamSettings{Partitions: partitions, Replicas: 1, MaxAge: time.Hour, Duplicates: 20 * time.Minute, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *testEnv) connect() jetstream.JetStream {
	nc, js := e.conn()
	e.t.Cleanup(nc.Close)
	return js
}

func (e *testEnv) conn() (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	return nc, js
}

func testConfig() Config {
	return Config{
		Partitions: 4, AckWait: 2 * time.Second, MaxDeliver: 5,
		InPlace: 2 * time.Second, Backoff: backoff.Policy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Budget: time.Minute, ParkBackoff: backoff.Policy{Base: 50 * time.Millisecond, Max: 100 * time.Millisecond},
		SweepEvery: 20 * time.Millisecond,
	}
}

// startWorker starts a worker on its own connection, as a processor
// replica. Its GiveUp is g's, or one of its own when g is nil.
func (e *testEnv) startWorker(cfg Config, r reconciler, g *giveUps) (*Worker, *nats.Conn) {
	e.t.Helper()
	nc, js := e.conn()
	ctx := context.Background()
	out, err := outcomes.Open(ctx, js, 1, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	parked, err := OpenParked(ctx, js, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	if g == nil {
		g = &giveUps{}
	}
	g.js = js
	w := New(Deps{Config: cfg, JetStream: js, Reconciler: rules{r, g}, Outcomes: out, Parked: parked, Metrics: metrics.New(), Log: quietLog()})
	if err := w.Start(ctx, nc); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { w.Stop(time.Second); nc.Close() })
	return w, nc
}

func quietLog() *logrus.Entry {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return logrus.NewEntry(log)
}

func (e *testEnv) publish(js jetstream.JetStream, m work.Message) {
	e.t.Helper()
	if _, err := js.PublishMsg(context.Background(), workstream.NewMsg(m, "")); err != nil {
		e.t.Fatal(err)
	}
}

func msg(source string, seq int) work.Message {
	return work.Message{Kind: string(event.AuthUpdate), SourceID: source, ApplicationID: strconv.Itoa(seq), Tenant: event.Tenant{OrgID: "o1"}, Origin: "test/" + strconv.Itoa(seq)}
}

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestThreeReplicasKeepSourceOrderWithoutOverlap: three workers pull from
// every partition; many sources with several events each are processed with
// no two events of a source at once and in publish order.
func TestThreeReplicasKeepSourceOrderWithoutOverlap(t *testing.T) {
	e := newTestEnv(t, 4)
	const sources, perSource = 20, 10
	rec := newRecorder(sources*perSource, 2*time.Millisecond)
	for i := 0; i < 3; i++ {
		e.startWorker(testConfig(), rec, nil)
	}
	js := e.connect()
	r := rand.New(rand.NewPCG(3, 5))
	next := make([]int, sources)
	for n := 0; n < sources*perSource; {
		s := r.IntN(sources)
		if next[s] == perSource {
			continue
		}
		next[s]++
		e.publish(js, msg(strconv.Itoa(100+s), n))
		n++
	}
	await(t, rec.doneCh, "all work")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.overlaps) > 0 {
		t.Errorf("sources processed twice at once: %v", rec.overlaps)
	}
	for s, seqs := range rec.order {
		if len(seqs) != perSource {
			t.Errorf("source %s: %d events processed, want %d", s, len(seqs), perSource)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("source %s processed out of order: %v", s, seqs)
				break
			}
		}
	}
}

// TestDeadProcessorsWorkIsTakenOver: a replica that stops answering while
// holding a message (its connection dies mid-reconcile) loses it after
// AckWait, and another replica finishes it.
func TestDeadProcessorsWorkIsTakenOver(t *testing.T) {
	e := newTestEnv(t, 4)
	dying := newRecorder(1, 0)
	release := make(chan struct{})
	dying.block, dying.blocked = release, make(chan struct{})
	defer close(release) // lets the dead replica's goroutine end with the test
	_, dyingConn := e.startWorker(testConfig(), dying, nil)
	js := e.connect()
	e.publish(js, msg("7", 1))
	await(t, dying.blocked, "the first replica to take the message")
	dyingConn.Close() // the replica is gone: no ack, no heartbeat
	healthy := newRecorder(1, 0)
	e.startWorker(testConfig(), healthy, nil)
	await(t, healthy.doneCh, "the second replica to finish the message")
	healthy.mu.Lock()
	defer healthy.mu.Unlock()
	if got := healthy.order["7"]; len(got) != 1 || got[0] != 1 {
		t.Errorf("the second replica processed %v, want the held message", got)
	}
}

// TestParkedSourceDoesNotDelayOthers: a source whose reconcile keeps failing
// transiently holds its partition for the in-place window only, then is
// parked; a later source of the same partition is processed meanwhile, and
// the parked one is retried and succeeds.
func TestParkedSourceDoesNotDelayOthers(t *testing.T) {
	e := newTestEnv(t, 1) // one partition: both sources share it
	cfg := testConfig()
	cfg.Partitions, cfg.InPlace = 1, 300*time.Millisecond
	rec := newRecorder(2, 0)
	rec.transient["1"] = 40 // more than the in-place window can retry
	w, _ := e.startWorker(cfg, rec, nil)
	js := e.connect()
	e.publish(js, msg("1", 1))
	e.publish(js, msg("2", 2))
	await(t, rec.doneCh, "both sources")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// Source 2 waited only for source 1's in-place window: it finished
	// while source 1 was still parked, not after source 1 recovered.
	if len(rec.finished) != 2 || rec.finished[0] != "2" || rec.finished[1] != "1" {
		t.Errorf("completion order %v, want source 2 before the parked source 1", rec.finished)
	}
	if parked := testutilValue(w.metrics.Parked); parked < 1 {
		t.Errorf("source 1 was never parked (parked_total %v)", parked)
	}
}

func testutilValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestMaxDeliveriesAdvisoryDeadLetters: a message whose every delivery dies
// unacknowledged (a processor crashing on it) is given up by the server
// after MaxDeliver; the advisory subscriber copies it to the dead-letter
// stream with its reason.
func TestMaxDeliveriesAdvisoryDeadLetters(t *testing.T) {
	e := newTestEnv(t, 1)
	cfg := testConfig()
	cfg.Partitions, cfg.AckWait, cfg.MaxDeliver = 1, time.Second, 2
	nc, js := e.conn()
	defer nc.Close()
	ctx := context.Background()
	// The partition consumer as the processors declare it, and the
	// advisory watch of a processor; the "processor" taking the message is
	// this test, which never acknowledges it.
	cons, err := js.CreateOrUpdateConsumer(ctx, work.StreamName, ConsumerConfig(cfg, 0))
	if err != nil {
		t.Fatal(err)
	}
	w := New(Deps{Config: cfg, JetStream: js, Metrics: metrics.New(), Log: quietLog()})
	sub, err := w.watchMaxDeliveries(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	e.publish(js, msg("9", 1))
	for delivery := 1; delivery <= cfg.MaxDeliver; delivery++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(waitLimit))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			meta, _ := m.Metadata()
			if int(meta.NumDelivered) != delivery {
				t.Fatalf("delivery %d reported as %d", delivery, meta.NumDelivered)
			}
		}
	}
	// Processors always have a pull waiting; the server notices the
	// exhausted message (and sends the advisory) when it would deliver it
	// again to one.
	if batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*cfg.AckWait)); err == nil {
		for m := range batch.Messages() {
			t.Errorf("delivered again after MaxDeliver: %s", m.Subject())
		}
	}
	dlq, err := js.OrderedConsumer(ctx, work.DLQStreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := dlq.Next(jetstream.FetchMaxWait(waitLimit))
	if err != nil {
		t.Fatalf("no dead letter after %d unacknowledged deliveries: %v", cfg.MaxDeliver, err)
	}
	h := dead.Headers()
	if h.Get(HeaderDLQReason) != "max_deliveries" || h.Get(workstream.HeaderSourceID) != "9" || h.Get(HeaderDLQDeliveries) != "2" {
		t.Errorf("dead letter headers %v", h)
	}
}

// TestParkedTwiceWithinDuplicateWindow: a source that fails, is parked and
// recovers, then fails again with the same attempt count inside the
// stream's duplicate window, gets both retries enqueued and applied; the
// second one must not be taken for a duplicate of the first.
func TestParkedTwiceWithinDuplicateWindow(t *testing.T) {
	e := newTestEnv(t, 1)
	cfg := testConfig()
	// Shorter than the first in-place delay: every episode parks after
	// exactly one attempt, so both parked retries carry attempt 1.
	cfg.Partitions, cfg.InPlace = 1, time.Millisecond
	rec := newRecorder(2, 0)
	rec.transient["5"] = 1
	w, _ := e.startWorker(cfg, rec, nil)
	js := e.connect()
	e.publish(js, msg("5", 1))
	testkit.Await(t, waitLimit, "the first episode's retry applied", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.order["5"]) == 1
	})
	rec.mu.Lock()
	rec.transient["5"] = 1
	rec.mu.Unlock()
	e.publish(js, msg("5", 2))
	await(t, rec.doneCh, "the second episode's retry applied")
	rec.mu.Lock()
	got := rec.order["5"]
	rec.mu.Unlock()
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("applied %v, want both events after their retries", got)
	}
	// The sweeper counts after its publish, which the reconcile may beat.
	testkit.Await(t, waitLimit, "two parked retries counted as enqueued", func() bool {
		return testutilValue(w.metrics.RetriesEnqueued) == 2
	})
}

// TestParkedRetryAlreadyEnqueuedIsKept: when another sweeper already stored
// the retry of this parked episode, the publish is a duplicate: counted, and
// the entry stays for the one that stored it to delete.
func TestParkedRetryAlreadyEnqueuedIsKept(t *testing.T) {
	e := newTestEnv(t, 1)
	js := e.connect()
	ctx := context.Background()
	parked, err := OpenParked(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := New(Deps{Config: testConfig(), JetStream: js, Parked: parked, Metrics: metrics.New(), Log: quietLog()})
	rev, err := parked.Put(ctx, parkedKey("8"), []byte(`{"due":"2000-01-01T00:00:00Z","attempt":1,"kind":"Authentication.update","source_id":"8","org_id":"o1"}`))
	if err != nil {
		t.Fatal(err)
	}
	other := msg("8", 1)
	other.Origin = fmt.Sprintf("retry/8/%d", rev) // what the other sweeper stored
	if dup, err := workstream.Publish(ctx, js, other); err != nil || dup {
		t.Fatalf("the other sweeper's publish: duplicate %v, %v", dup, err)
	}
	if err := w.enqueueIfDue(ctx, parkedKey("8")); err != nil {
		t.Fatal(err)
	}
	if n := testutilValue(w.metrics.RetryDuplicates); n != 1 {
		t.Errorf("duplicates counted %v, want 1", n)
	}
	if n := testutilValue(w.metrics.RetriesEnqueued); n != 0 {
		t.Errorf("enqueued counted %v, want 0", n)
	}
	if _, err := parked.Get(ctx, parkedKey("8")); err != nil {
		t.Errorf("the parked entry was dropped on a duplicate: %v", err)
	}
}

// TestMessageExhaustedWhileAllProcessorsDownIsDeadLettered: every delivery
// of a message dies unacknowledged while no processor watches the
// max-deliveries advisory; the server gives up on it either at the first
// pull of the restarted processors or before, at a pull of a processor that
// died too (nobody heard that advisory). Either way the restarted processors
// dead-letter it, once.
func TestMessageExhaustedWhileAllProcessorsDownIsDeadLettered(t *testing.T) {
	for name, pullBefore := range map[string]bool{"given up at the restart": false, "given up while nobody listened": true} {
		t.Run(name, func(t *testing.T) { exhaustWhileDown(t, pullBefore) })
	}
}

func exhaustWhileDown(t *testing.T, pullBefore bool) {
	e := newTestEnv(t, 2)
	cfg := testConfig()
	cfg.Partitions, cfg.AckWait, cfg.MaxDeliver = 2, time.Second, 2
	nc, js := e.conn()
	defer nc.Close()
	ctx := context.Background()
	e.publish(js, msg("12", 0)) // other sources' messages, stored before and after
	m := msg("11", 1)
	ack, err := js.PublishMsg(ctx, workstream.NewMsg(m, ""))
	if err != nil {
		t.Fatal(err)
	}
	e.publish(js, msg("13", 2))
	cons := partitionConsumer(t, js, cfg, ack.Sequence)
	// The processors that took source 11's message died on it, every time.
	deliveries := cfg.MaxDeliver
	if pullBefore {
		deliveries++ // the pull at which the server gives up: the next message of the partition, if any
	}
	for delivery := 1; delivery <= deliveries; delivery++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(3*cfg.AckWait))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if delivery <= cfg.MaxDeliver && m.Headers().Get(workstream.HeaderSourceID) != "11" {
				t.Fatalf("delivery %d: source %s, want 11", delivery, m.Headers().Get(workstream.HeaderSourceID))
			}
		}
	}
	if pullBefore {
		testkit.Await(t, waitLimit, "the server to give up on the message", func() bool {
			info, err := cons.Info(ctx)
			return err == nil && (info.NumAckPending == 0 || info.Delivered.Stream > ack.Sequence)
		})
	}
	// The processors start again (two of them, and one more later): one dead letter.
	e.startWorker(cfg, newRecorder(0, 0), nil)
	e.startWorker(cfg, newRecorder(0, 0), nil)
	dlq, err := js.Stream(ctx, work.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Await(t, waitLimit, "a dead letter", func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs > 0
	})
	late, _ := e.startWorker(cfg, newRecorder(0, 0), nil)
	info, _ := dlq.Info(ctx)
	if info.State.Msgs != 1 {
		t.Errorf("%d dead letters, want 1", info.State.Msgs)
	}
	dead, err := dlq.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	if dead.Header.Get(HeaderDLQReason) != "max_deliveries" || dead.Header.Get(workstream.HeaderSourceID) != "11" {
		t.Errorf("dead letter headers %v", dead.Header)
	}
	if n := testutilValue(late.metrics.DeadLetters.WithLabelValues("max_deliveries")); n != 0 {
		t.Errorf("a processor started later counted %v dead letters for a message already dead-lettered", n)
	}
}

// partitionConsumer declares the partition consumer that holds stream
// sequence seq, as the processors declare it.
func partitionConsumer(t *testing.T, js jetstream.JetStream, cfg Config, seq uint64) jetstream.Consumer {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, work.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(strings.Split(stored.Subject, ".")[2]) // cloudoreg.work.<p>.<source>
	cons, err := js.CreateOrUpdateConsumer(ctx, work.StreamName, ConsumerConfig(cfg, p))
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// alwaysFails is a reconciler that always fails with err.
type alwaysFails struct{ err error }

func (f alwaysFails) Reconcile(context.Context, work.Message) (reconcile.Outcome, error) {
	return reconcile.Outcome{}, f.err
}

// TestDeadLetterReasons: each kind of failure leaves the work stream with
// its own reason, and only transient failures of a dependency that outlast
// the budget are given up to the customer (CG3000), after the dead letter
// is stored. A refused PSK and Cloudoreg's own AWS credentials rejected are
// an operator's problem: retried for the budget, then dead-lettered and
// never reported; a refused Sources read is dead-lettered at once. The
// source's outcome record says which.
func TestDeadLetterReasons(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		reason   failure.DeadLetterReason
		reported []status.Message
		record   outcomes.Record
	}{
		{"transient", failure.Transient("sts", fmt.Errorf("throttled")), failure.ReasonBudgetSpent,
			[]status.Message{status.UnavailableMessage("21", status.CG3000)},
			outcomes.Record{State: "unavailable", Code: "CG3000", Reason: "retry budget spent", ApplicationID: "21"}},
		{"sources refuses the PSK", failure.Operator(failure.ReasonSourcesUnauthorized, "sources", fmt.Errorf("HTTP 401")), failure.ReasonSourcesUnauthorized, nil,
			outcomes.Record{State: "dead_lettered", Reason: "sources_unauthorized", ApplicationID: "21"}},
		{"Cloudoreg's AWS credentials rejected", failure.Transient("sts", fmt.Errorf("InvalidClientTokenId: %w", failure.ErrConfiguration)), failure.ReasonConfiguration, nil,
			outcomes.Record{State: "dead_lettered", Reason: "configuration", ApplicationID: "21"}},
		{"sources refuses the read", failure.DeadLetter(failure.ReasonSourcesRefused, "sources", fmt.Errorf("HTTP 400")), failure.ReasonSourcesRefused, nil,
			outcomes.Record{State: "dead_lettered", Reason: "sources_refused", ApplicationID: "21"}},
		{"a customer's failure returned", failure.Permanent(status.CG3002, "sts", fmt.Errorf("denied")), failure.ReasonInternal, nil,
			outcomes.Record{State: "dead_lettered", Reason: "internal", ApplicationID: "21"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, 1)
			cfg := testConfig()
			// Shorter than the first in-place delay: one attempt, given up at once.
			cfg.Partitions, cfg.InPlace, cfg.Budget = 1, time.Millisecond, 0
			g := &giveUps{}
			w, _ := e.startWorker(cfg, alwaysFails{tc.err}, g)
			js := e.connect()
			e.publish(js, msg("9", 21))
			dlq, err := js.OrderedConsumer(context.Background(), work.DLQStreamName, jetstream.OrderedConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			dead, err := dlq.Next(jetstream.FetchMaxWait(waitLimit))
			if err != nil {
				t.Fatalf("no dead letter: %v", err)
			}
			if got := dead.Headers().Get(HeaderDLQReason); got != string(tc.reason) {
				t.Errorf("reason %q, want %q (detail %q)", got, tc.reason, dead.Headers().Get(HeaderDLQDetail))
			}
			// The report, if any, comes after the dead letter: wait for
			// the message to leave the work stream before reading it.
			testkit.Await(t, waitLimit, "the message to leave the work stream", func() bool {
				return testutilValue(w.metrics.DeadLetters.WithLabelValues(string(tc.reason))) == 1 && pending(t, js) == 0
			})
			g.mu.Lock()
			defer g.mu.Unlock()
			if fmt.Sprint(g.sent) != fmt.Sprint(tc.reported) {
				t.Errorf("reported %+v, want %+v", g.sent, tc.reported)
			}
			for i, n := range g.dead {
				if n != 1 {
					t.Errorf("report %d: the customer was told with %d dead letters stored, want the one first", i, n)
				}
			}
			got := outcome(t, js, "9")
			want := tc.record
			want.OrgID, want.Attempts, want.LastEvent, want.Origin, want.Time = "o1", 1, string(event.AuthUpdate), "test/21", got.Time
			if got != want {
				t.Errorf("outcome record %+v, want %+v", got, want)
			}
			if n := testutilValue(w.metrics.Work.WithLabelValues(string(event.AuthUpdate), want.State, want.Code)); n != 1 {
				t.Errorf("work_total{state=%q,code=%q} = %v, want 1", want.State, want.Code, n)
			}
		})
	}
}

// TestBudgetSpentAfterParking: a source that keeps failing transiently is
// parked and retried until the budget is spent; then it is dead-lettered
// once, given up to the customer once, its parked retry is gone and its
// record counts every attempt.
func TestBudgetSpentAfterParking(t *testing.T) {
	e := newTestEnv(t, 1)
	cfg := testConfig()
	cfg.Partitions, cfg.InPlace, cfg.Budget = 1, time.Millisecond, 300*time.Millisecond
	g := &giveUps{}
	w, _ := e.startWorker(cfg, alwaysFails{failure.Transient("rhsm", fmt.Errorf("503"))}, g)
	js := e.connect()
	e.publish(js, msg("21", 42))
	testkit.Await(t, waitLimit, "the budget to be spent", func() bool {
		return testutilValue(w.metrics.Work.WithLabelValues(string(event.AuthUpdate), "unavailable", "CG3000")) == 1 && pending(t, js) == 0
	})
	if n := testutilValue(w.metrics.Parked); n < 1 {
		t.Errorf("parked_total %v, want the source parked before", n)
	}
	if n := testutilValue(w.metrics.DeadLetters.WithLabelValues("budget_spent")); n != 1 {
		t.Errorf("%v dead letters, want 1", n)
	}
	g.mu.Lock()
	if !slices.Equal(g.sent, []status.Message{status.UnavailableMessage("42", status.CG3000)}) || !slices.Equal(g.dead, []uint64{1}) {
		t.Errorf("told %v with %v dead letters stored, want CG3000 once after the dead letter", g.sent, g.dead)
	}
	g.mu.Unlock()
	r := outcome(t, js, "21")
	if r.State != "unavailable" || r.Code != "CG3000" || r.Attempts < 2 || !strings.HasPrefix(r.Origin, "retry/21/") {
		t.Errorf("outcome record %+v, want CG3000 after the parked retries", r)
	}
	kv, err := js.KeyValue(context.Background(), ParkedBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), parkedKey("21")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("parked retry after the budget was spent: %v", err)
	}
}

// outcome is the source's outcome record.
func outcome(t *testing.T, js jetstream.JetStream, sourceID string) outcomes.Record {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), outcomes.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	r, err := outcomes.New(kv).Get(context.Background(), sourceID)
	if err != nil {
		t.Fatalf("outcome of source %s: %v", sourceID, err)
	}
	return r
}

// pending is how many messages of the work stream are not yet acknowledged
// or terminated by the partition consumer.
func pending(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	c, err := js.Consumer(context.Background(), work.StreamName, workstream.ConsumerName(0))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(info.NumPending) + info.NumAckPending
}
