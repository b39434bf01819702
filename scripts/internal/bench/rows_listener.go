package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// bridgeStream is where the bare bridge publishes: the work stream's
// configuration (file store, partition transform, duplicate window) under
// another name and subjects.
const (
	bridgeStream = "BENCH_BRIDGE"
	bridgePrefix = "bench.bridge."
)

const rowLimit = 3 * time.Minute

func (e *env) bridgeStream(ctx context.Context) error {
	_ = e.js.DeleteStream(ctx, bridgeStream)
	cfg := workstream.StreamConfig(e.streamSettings())
	cfg.Name, cfg.Subjects = bridgeStream, []string{bridgePrefix + "*"}
	cfg.SubjectTransform = &jetstream.SubjectTransformConfig{
		Source: bridgePrefix + "*", Destination: fmt.Sprintf("%s{{partition(%d,1)}}.{{wildcard(1)}}", bridgePrefix, e.opts.Partitions),
	}
	_, err := e.js.CreateStream(ctx, cfg)
	return err
}

func (e *env) bridgeOptions(topic string, publish bool) BridgeOptions {
	return BridgeOptions{Brokers: e.stack.KafkaAddr, Topic: topic, Group: e.name("bench-bridge"), NATSURL: e.stack.NATSURL,
		Prefix: bridgePrefix, Publish: publish, MaxInFlight: 256, CommitEvery: 100 * time.Millisecond}
}

// measured is a program's rate and peak memory in one measurement.
type measured struct {
	rate float64
	rss  int64
}

// measure starts the program, takes its rate with count, reads its peak RSS
// while it still runs, and stops it.
func measure(ctx context.Context, start func() (*proc, error), total float64, count func() (float64, error)) (measured, error) {
	p, err := start()
	if err != nil {
		return measured{}, err
	}
	defer p.stop()
	r, err := rate(ctx, total, rowLimit, count)
	if err != nil {
		return measured{}, fmt.Errorf("%s: %w", p.name, err)
	}
	rss, err := p.peakRSS()
	return measured{rate: r, rss: rss}, err
}

func (e *env) streamCounter(ctx context.Context, name string) func() (float64, error) {
	return func() (float64, error) {
		n, err := e.streamMsgs(ctx, name)
		return float64(n), err
	}
}

func (e *env) committedCounter(group, topic string) func() (float64, error) {
	return func() (float64, error) {
		n, err := e.committed(group, topic)
		return float64(n), err
	}
}

// rowForwarding is row 1 (listener forwarding vs the bare bridge) and the
// listener's and the bridge's part of row 7 (peak RSS).
func rowForwarding(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.Events
	topic := e.name("bench.forward")
	if err := e.createTopic(topic); err != nil {
		return nil, err
	}
	if err := e.produce(ctx, topic, n, func(i int) kafkaEvent {
		src := i%e.opts.Sources + 1
		return pauseEvent(src, 1_000_000+src)
	}); err != nil {
		return nil, err
	}
	if err := e.bridgeStream(ctx); err != nil {
		return nil, err
	}
	bridge, err := measure(ctx, func() (*proc, error) { return e.startBridge("bridge-forward", e.bridgeOptions(topic, true)) },
		float64(n), e.streamCounter(ctx, bridgeStream))
	_ = e.js.DeleteStream(ctx, bridgeStream)
	if err != nil {
		return nil, err
	}
	if err := e.workStream(ctx); err != nil {
		return nil, err
	}
	group := e.name("bench-listener")
	listener, err := measure(ctx, func() (*proc, error) { return e.startListener("listener-forward", topic, group) },
		float64(n), e.streamCounter(ctx, work.StreamName))
	if err != nil {
		return nil, err
	}
	e.forwardRate, e.bridgeRSS = listener.rate, bridge.rss
	note := fmt.Sprintf("%d Application.pause events over %d sources, LOG_LEVEL=%s", n, e.opts.Sources, e.opts.LogLevel)
	return []Row{
		ratioRow(Row{N: "1", Name: "listener forwarding", Value: listener.rate, Unit: "events/s",
			Baseline: bridge.rate, BaseName: "bare bridge", Note: note}, 0.85, 0),
		ratioRow(Row{N: "7a", Name: "listener peak RSS (row 1)", Value: mib(listener.rss), Unit: "MiB",
			Baseline: mib(bridge.rss), BaseName: "bare bridge"}, 0, 1.2),
	}, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rowMix is row 2: a realistic mix (90 % ignored types) against bare
// consumption of the same topic, both counted by committed offsets.
func rowMix(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.MixEvents
	topic := e.name("bench.mix")
	if err := e.createTopic(topic); err != nil {
		return nil, err
	}
	if err := e.produce(ctx, topic, n, func(i int) kafkaEvent {
		src := i%e.opts.Sources + 1
		if i%10 == 0 {
			return pauseEvent(src, 1_000_000+src)
		}
		return ignoredEvent(i, src)
	}); err != nil {
		return nil, err
	}
	bo := e.bridgeOptions(topic, false)
	bare, err := measure(ctx, func() (*proc, error) { return e.startBridge("bare-consumer", bo) },
		float64(n), e.committedCounter(bo.Group, topic))
	if err != nil {
		return nil, err
	}
	if err := e.workStream(ctx); err != nil {
		return nil, err
	}
	group := e.name("bench-listener")
	listener, err := measure(ctx, func() (*proc, error) { return e.startListener("listener-mix", topic, group) },
		float64(n), e.committedCounter(group, topic))
	if err != nil {
		return nil, err
	}
	return []Row{ratioRow(Row{N: "2", Name: "listener, realistic mix", Value: listener.rate, Unit: "events/s",
		Baseline: bare.rate, BaseName: "bare sarama consumption",
		Note: fmt.Sprintf("%d events, 90 %% of ignored types, counted by committed offsets", n)}, 0.7, 0)}, nil
}

// rowLookups is row 3: ApplicationAuthentication events whose source id
// comes from the routing index or a Sources GET answering after 1 ms,
// against row 1's rate (events that carry their source id); then every
// source's events are checked to be stored in Kafka order.
func rowLookups(ctx context.Context, e *env) ([]Row, error) {
	n := e.opts.LookupEvents
	srv, gets, err := slowApplications(time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	topic := e.name("bench.lookups")
	if err := e.createTopic(topic); err != nil {
		return nil, err
	}
	if err := e.produce(ctx, topic, n, func(i int) kafkaEvent { return appAuthEvent(i+1, i%e.opts.Apps+1) }); err != nil {
		return nil, err
	}
	if err := e.workStream(ctx); err != nil {
		return nil, err
	}
	// The routing index of earlier runs would answer every lookup.
	_ = e.js.DeleteKeyValue(ctx, "CLOUDOREG_ROUTES")
	group := e.name("bench-listener")
	url := "http://" + srv.Addr().String()
	listener, err := measure(ctx, func() (*proc, error) {
		return e.startListener("listener-lookups", topic, group, "SOURCES_URL="+url)
	}, float64(n), e.streamCounter(ctx, work.StreamName))
	if err != nil {
		return nil, err
	}
	violations, err := e.orderViolations(ctx, n)
	if err != nil {
		return nil, err
	}
	r := Row{N: "3", Name: "listener with routing lookups", Value: listener.rate, Unit: "events/s",
		Note: fmt.Sprintf("%d events over %d applications, %d Sources GETs of 1 ms (one at a time they alone would take %.1f s); per-source order violations: %d",
			n, e.opts.Apps, gets.Load(), float64(gets.Load())/1000, violations)}
	if e.forwardRate > 0 {
		r.Baseline, r.BaseName = e.forwardRate, "row 1 (source id in payload)"
	}
	r = ratioRow(r, 0, 0)
	r.Target = "order kept"
	r.Verdict = verdict(violations == 0)
	return []Row{r}, nil
}

// slowApplications serves GET /api/sources/v3.1/applications/<id> as
// Sources does, after delay; the source id is the application id plus
// 500000. It counts the GETs.
func slowApplications(delay time.Duration) (net.Listener, *atomic.Int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	gets := &atomic.Int64{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/sources/v3.1/applications/{id}", func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"id": strconv.Itoa(id), "source_id": strconv.Itoa(id + 500000), "application_type_id": "5"})
	})
	go func() { _ = http.Serve(ln, mux) }()
	return ln, gets, nil
}

// orderViolations reads the work stream in batches and counts messages of a
// source stored after a message of the same source with a later Kafka
// offset (Nats-Msg-Id is topic/partition/offset).
func (e *env) orderViolations(ctx context.Context, n int) (int, error) {
	cons, err := e.js.OrderedConsumer(ctx, work.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	last := map[string]int64{}
	violations := 0
	for seen := 0; seen < n; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			id := m.Headers().Get(jetstream.MsgIDHeader)
			off, err := strconv.ParseInt(id[strings.LastIndexByte(id, '/')+1:], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("message id %q: %w", id, err)
			}
			src := m.Headers().Get(workstream.HeaderSourceID)
			if prev, ok := last[src]; ok && prev > off {
				violations++
			}
			last[src] = off
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			return 0, batch.Error()
		}
		if got == 0 {
			return 0, fmt.Errorf("work stream: %d of %d messages read", seen, n)
		}
		seen += got
	}
	return violations, nil
}
