package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// workDone is the processors' counter of finished work messages.
const workDone = "cloudoreg_processor_work_total"

// pool returns the first n sources of the run's pool, creating what is
// missing (sources are created once and reused by every row).
func (e *env) pool(ctx context.Context, n int) ([]source, error) {
	if len(e.sources) < n {
		more, err := e.createSources(ctx, len(e.sources), n-len(e.sources))
		e.sources = append(e.sources, more...)
		if err != nil {
			return nil, err
		}
	}
	return e.sources[:n], nil
}

// resetState forgets every registration and claim, so each run starts from
// sources Cloudoreg has not seen.
func (e *env) resetState(ctx context.Context) error {
	e.stack.RHSM.Reset()
	for _, b := range []string{"CLOUDOREG_ACCOUNTS", "CLOUDOREG_SOURCES", "CLOUDOREG_RETRIES"} {
		_ = e.js.DeleteKeyValue(ctx, b)
	}
	return e.workStream(ctx)
}

// enqueue publishes one ApplicationAuthentication.create for each source, as the
// listener does, and waits until the stream stored them all.
func (e *env) enqueue(ctx context.Context, srcs []source) error {
	run := e.name("work")
	futs := make([]jetstream.PubAckFuture, 0, len(srcs))
	for i, s := range srcs {
		m := work.Message{Kind: string(event.AppAuthCreate), SourceID: s.ID, ApplicationID: s.AppID, AuthenticationID: s.AuthID,
			Tenant: event.Tenant{OrgID: s.Org}, Origin: run + "/" + strconv.Itoa(i)}
		f, err := e.js.PublishMsgAsync(workstream.NewMsg(m, m.Origin))
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// processors starts k processors and waits until all are ready.
func (e *env) processors(ctx context.Context, name string, k int, extra ...string) ([]*proc, error) {
	var ps []*proc
	for i := 0; i < k; i++ {
		p, err := e.startProcessor(fmt.Sprintf("%s-%d", name, i+1), extra...)
		if err != nil {
			stopAll(ps)
			return nil, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := p.waitReady(ctx); err != nil {
			stopAll(ps)
			return nil, err
		}
	}
	return ps, nil
}

// drain runs k processors until they finished n work messages, stops them,
// and returns their rate and their external calls per message.
func (e *env) drain(ctx context.Context, name string, k, n int) (float64, callCounts, error) {
	ps, err := e.processors(ctx, name, k)
	if err != nil {
		return 0, callCounts{}, err
	}
	r, err := rate(ctx, float64(n), workCounter(ps, ""))
	var c callCounts
	if err == nil {
		c, err = processorCalls(ps)
	}
	stopAll(ps)
	if err != nil {
		return 0, callCounts{}, err
	}
	return r, c.per(float64(n)), nil
}

func stopAll(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// workCounter sums a series of the processors' work counter.
func workCounter(ps []*proc, label string) func() (float64, error) {
	return func() (float64, error) {
		var sum float64
		for _, p := range ps {
			v, err := p.metric(workDone, label)
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}
}

// rowProcessorThroughput is row 4 (zero-latency stand-ins, 1, 2 and 4
// processors, against an ack-only consumer of the same partition consumers)
// and the processor's part of row 7.
func rowProcessorThroughput(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.ReconcileN
	srcs, err := e.pool(ctx, n)
	if err != nil {
		return nil, err
	}
	ackOnly, err := e.ackOnlyRate(ctx, srcs)
	if err != nil {
		return nil, err
	}
	var rows []Row
	var rss int64
	for _, k := range e.opts.Processors {
		if err := e.resetState(ctx); err != nil {
			return rows, err
		}
		if err := e.enqueue(ctx, srcs); err != nil {
			return rows, err
		}
		ps, err := e.processors(ctx, "processor-throughput-"+strconv.Itoa(k), k)
		if err != nil {
			return rows, err
		}
		r, err := rate(ctx, float64(n), workCounter(ps, ""))
		if err == nil && rss == 0 {
			rss, err = ps[0].peakRSS()
		}
		stopAll(ps)
		if err != nil {
			return rows, err
		}
		rows = append(rows, ratioRow(Row{N: "4", Name: fmt.Sprintf("processor, %d process(es), P=%d", k, e.opts.Partitions),
			Value: r, Unit: "sources/s", Baseline: ackOnly, BaseName: "ack-only consumer",
			Note: fmt.Sprintf("%d first registrations (ApplicationAuthentication.create), zero-latency stand-ins", n)}, 0, 0))
	}
	if e.bridgeRSS > 0 {
		rows = append(rows, ratioRow(Row{N: "7b", Name: fmt.Sprintf("processor peak RSS (row 4, %d process)", e.opts.Processors[0]),
			Value: mib(rss), Unit: "MiB", Baseline: mib(e.bridgeRSS), BaseName: "bare bridge"}, 0, 0))
	}
	return rows, nil
}

// ackOnlyRate binds the processors' partition consumers (declared by a
// processor started and stopped for it) and acknowledges every message
// without work: the rate the work stream alone allows with MaxAckPending=1.
func (e *env) ackOnlyRate(ctx context.Context, srcs []source) (float64, error) {
	if err := e.resetState(ctx); err != nil {
		return 0, err
	}
	ps, err := e.processors(ctx, "processor-declare", 1)
	if err != nil {
		return 0, err
	}
	stopAll(ps)
	if err := e.enqueue(ctx, srcs); err != nil {
		return 0, err
	}
	var acked atomic.Int64
	var ccs []jetstream.ConsumeContext
	defer func() {
		for _, cc := range ccs {
			cc.Stop()
		}
	}()
	for p := 0; p < e.opts.Partitions; p++ {
		c, err := e.js.Consumer(ctx, work.StreamName, workstream.ConsumerName(p))
		if err != nil {
			return 0, err
		}
		cc, err := c.Consume(func(m jetstream.Msg) {
			if m.Ack() == nil {
				acked.Add(1)
			}
		}, jetstream.PullMaxMessages(1))
		if err != nil {
			return 0, err
		}
		ccs = append(ccs, cc)
	}
	return rate(ctx, float64(len(srcs)), func() (float64, error) { return float64(acked.Load()), nil })
}

// callCounts is how many calls processors made to each dependency, from
// their own counters (the stand-ins keep a bounded call log).
type callCounts struct{ sources, sts, rhsm float64 }

func processorCalls(ps []*proc) (callCounts, error) {
	var c callCounts
	for target, v := range map[string]*float64{"sources": &c.sources, "sts": &c.sts, "rhsm": &c.rhsm} {
		for _, p := range ps {
			n, err := p.metric("cloudoreg_processor_external_call_seconds_count", `target="`+target+`"`)
			if err != nil {
				return c, err
			}
			*v += n
		}
	}
	// The processor times a verification (AssumeRole, then GetCallerIdentity
	// with the session) as one sts call; every bench role passes both.
	c.sts *= 2
	return c, nil
}

func (c callCounts) per(n float64) callCounts {
	return callCounts{c.sources / n, c.sts / n, c.rhsm / n}
}

func (c callCounts) total() float64 { return c.sources + c.sts + c.rhsm }

func (c callCounts) String() string {
	return fmt.Sprintf("%.2f Sources, %.2f STS, %.2f RHSM", c.sources, c.sts, c.rhsm)
}

// Realistic latencies of one call (row 5).
const (
	sourcesLatency = 20 * time.Millisecond
	stsLatency     = 100 * time.Millisecond
	rhsmLatency    = 50 * time.Millisecond
)

// rowLatencyScaling is row 5: reconciles with realistic latencies against
// the ideal P / (the sum of the latencies of one reconcile's calls), and
// the part of the gap the hash spread of the sources over the partitions
// explains (the busiest partition bounds the run).
func rowLatencyScaling(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.LatencyN
	srcs, err := e.pool(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := e.resetState(ctx); err != nil {
		return nil, err
	}
	if err := e.enqueue(ctx, srcs); err != nil {
		return nil, err
	}
	busiest, err := e.busiestPartition(ctx)
	if err != nil {
		return nil, err
	}
	e.stack.Sources.Faults().Set(faults.Fault{Delay: sourcesLatency})
	e.stack.STS.Faults().Set(faults.Fault{Delay: stsLatency})
	e.stack.RHSM.Faults().Set(faults.Fault{Delay: rhsmLatency})
	defer func() {
		e.stack.Sources.Faults().Clear()
		e.stack.STS.Faults().Clear()
		e.stack.RHSM.Faults().Clear()
	}()
	k := e.opts.Processors[len(e.opts.Processors)/2]
	r, c, err := e.drain(ctx, "processor-latency", k, n)
	if err != nil {
		return nil, err
	}
	perReconcile := time.Duration(c.sources*float64(sourcesLatency) + c.sts*float64(stsLatency) + c.rhsm*float64(rhsmLatency))
	ideal := float64(e.opts.Partitions) / perReconcile.Seconds()
	spreadIdeal := float64(n) / (float64(busiest) * perReconcile.Seconds())
	calls := fmt.Sprintf("%s calls per reconcile = %s", c, perReconcile.Round(time.Millisecond))
	row := ratioRow(Row{N: "5", Name: fmt.Sprintf("processor, realistic latency, %d processes", k), Value: r, Unit: "sources/s",
		Baseline: ideal, BaseName: fmt.Sprintf("ideal P/latency (P=%d)", e.opts.Partitions), Note: fmt.Sprintf("%d sources; %s", n, calls)}, 0.8, 0)
	spread := ratioRow(Row{N: "5b", Name: "  ideal with the hash spread", Value: spreadIdeal, Unit: "sources/s", Baseline: ideal, BaseName: "ideal P/latency",
		Note: fmt.Sprintf("busiest partition holds %d of %d sources (even: %.1f); measured / spread ideal = %.2f", busiest, n, float64(n)/float64(e.opts.Partitions), r/spreadIdeal)}, 0, 0)
	return []Row{row, spread}, nil
}

// busiestPartition is the most messages any partition of the work stream holds.
func (e *env) busiestPartition(ctx context.Context) (int, error) {
	s, err := e.js.Stream(ctx, work.StreamName)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(work.SubjectPrefix+">"))
	if err != nil {
		return 0, err
	}
	load := map[string]int{}
	for subj, count := range info.State.Subjects {
		parts := strings.Split(subj, ".")
		load[parts[2]] += int(count)
	}
	most := 0
	for _, v := range load {
		most = max(most, v)
	}
	if most == 0 {
		return 0, fmt.Errorf("work stream holds no messages")
	}
	return most, nil
}

// rowEndToEnd is row 6: from the Kafka event to the status message at light
// load (unpause events of known sources, one processor, zero latency).
func rowEndToEnd(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.LatencyEvents
	srcs, err := e.pool(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := e.resetState(ctx); err != nil {
		return nil, err
	}
	topic := e.name("bench.e2e")
	if err := e.createTopic(topic); err != nil {
		return nil, err
	}
	ps, err := e.processors(ctx, "processor-e2e", 1)
	if err != nil {
		return nil, err
	}
	defer stopAll(ps)
	l, err := e.startListener("listener-e2e", topic, e.name("bench-listener"))
	if err != nil {
		return nil, err
	}
	defer l.stop()
	if err := l.waitReady(ctx); err != nil {
		return nil, err
	}
	statuses, err := e.statusWatcher(ctx)
	if err != nil {
		return nil, err
	}
	defer statuses.close()
	prod, err := e.producer(topic)
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	tick := time.NewTicker(time.Second / time.Duration(e.opts.LatencyRate))
	defer tick.Stop()
	for _, s := range srcs {
		<-tick.C
		statuses.sent(s.AppID)
		if err := prod.ProduceSync(ctx, record(unpauseEvent(s))).FirstErr(); err != nil {
			return nil, err
		}
	}
	lat, err := statuses.wait(ctx, n)
	if err != nil {
		return nil, err
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	note := fmt.Sprintf("%d Application.unpause events at %d/s, listener and 1 processor, zero-latency stand-ins; p50 %.1f ms", n, e.opts.LatencyRate, ms(p50))
	r := Row{N: "6", Name: "end-to-end latency p99", Value: ms(p99), Unit: "ms", Target: "< 50 ms", Verdict: verdict(p99 < 50*time.Millisecond), Note: note}
	r50 := Row{N: "6", Name: "end-to-end latency p50", Value: ms(p50), Unit: "ms", Target: "-", Verdict: "-"}
	return []Row{r50, r}, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// statusWatcher reads the status topic from its end and times each
// application's first status message after its event was sent.
type statusWatcher struct {
	cl     *kgo.Client
	mu     sync.Mutex
	sentAt map[string]time.Time
	lat    []time.Duration
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) statusWatcher(ctx context.Context) (*statusWatcher, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.stack.KafkaAddr), kgo.ConsumeTopics("platform.sources.status"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return nil, err
	}
	// The end offsets are fixed at the first fetch: do it before any event.
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	cl.PollFetches(wctx)
	cancel()
	ctx, cancel = context.WithCancel(ctx)
	w := &statusWatcher{cl: cl, sentAt: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w, nil
}

func (w *statusWatcher) run(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		fs := w.cl.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			var m status.Message
			if json.Unmarshal(r.Value, &m) != nil {
				return
			}
			w.mu.Lock()
			if t, ok := w.sentAt[m.ResourceID]; ok {
				w.lat = append(w.lat, now.Sub(t))
				delete(w.sentAt, m.ResourceID)
			}
			w.mu.Unlock()
		})
	}
}

func (w *statusWatcher) sent(appID string) {
	w.mu.Lock()
	w.sentAt[appID] = time.Now()
	w.mu.Unlock()
}

func (w *statusWatcher) wait(ctx context.Context, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got []time.Duration
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		got = slices.Clone(w.lat)
		return len(got) >= n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("status messages: %d of %d: %w", len(got), n, err)
	}
	return got, nil
}

func (w *statusWatcher) close() {
	w.cancel()
	<-w.done
	w.cl.Close()
}

// rowPeriodic is row 8: the periodic reconcile of held sources. The sources
// are registered first (event-driven, the baseline of calls); then
// processors run with RECONCILE_EVERY and the time and the calls until every
// held source was reconciled once are measured.
func rowPeriodic(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.HeldSources
	srcs, err := e.pool(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := e.resetState(ctx); err != nil {
		return nil, err
	}
	if err := e.enqueue(ctx, srcs); err != nil {
		return nil, err
	}
	k := e.opts.Processors[len(e.opts.Processors)/2]
	createRate, create, err := e.drain(ctx, "processor-hold", k, n)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	ps, err := e.processors(ctx, "processor-periodic", k, "RECONCILE_EVERY="+e.opts.ReconcileEvery.String())
	if err != nil {
		return nil, err
	}
	defer stopAll(ps)
	counter := workCounter(ps, `kind="`+work.KindReconcile+`"`)
	wctx, cancel := context.WithTimeout(ctx, e.opts.ReconcileEvery+rowLimit)
	defer cancel()
	err = poll(wctx, 50*time.Millisecond, func() (bool, error) {
		v, err := counter()
		return v >= float64(n), err
	})
	if err != nil {
		return nil, fmt.Errorf("periodic reconciles: %w", err)
	}
	took := time.Since(start)
	periodic, err := processorCalls(ps)
	if err != nil {
		return nil, err
	}
	done, err := counter()
	if err != nil {
		return nil, err
	}
	periodic = periodic.per(done)
	return []Row{
		ratioRow(Row{N: "8", Name: fmt.Sprintf("periodic reconcile of %d held sources", n), Value: took.Seconds(), Unit: "s",
			Baseline: e.opts.ReconcileEvery.Seconds(), BaseName: "RECONCILE_EVERY",
			Note: fmt.Sprintf("%d processes; calls per periodic reconcile: %s (per first registration: %s; those ran at %.0f/s)", k, periodic, create, createRate)}, 0, 0),
		ratioRow(Row{N: "8b", Name: "  calls per periodic reconcile", Value: periodic.total(), Unit: "calls",
			Baseline: create.total(), BaseName: "per first registration"}, 0, 0),
	}, nil
}
