package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cloudoreg/cloudoreg/listener/app"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/logging"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

const (
	topic           = "platform.sources.event-stream"
	waitLimit       = 90 * time.Second
	maxKafkaMessage = 8 << 20
)

// env is a Kafka broker, a restartable NATS server with its store kept, the
// work stream (as the processors declare it) and a Sources API on loopback.
type env struct {
	t        testing.TB
	kafka    *kfake.Cluster
	brokers  []string
	natsPort int
	natsDir  string
	ns       *server.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	sources  *fakeSources
	producer sarama.SyncProducer
	logs     *testkit.SyncBuffer
	natsOpts func(*server.Options) // changes to the NATS server's options
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with the NATS server's options changed by natsOpts.
func newEnvWith(t testing.TB, natsOpts func(*server.Options)) *env {
	t.Helper()
	e := &env{t: t, natsDir: t.TempDir(), natsPort: testkit.FreePorts(t, 1)[0], logs: &testkit.SyncBuffer{}, natsOpts: natsOpts}
	// Messages up to 8 MiB, so that poison with megabytes of headers
	// reaches the listener, as it may from a misbehaving producer.
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(maxKafkaMessage)}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.kafka, e.brokers = c, c.ListenAddrs()
	e.startNATS()
	t.Cleanup(e.stopNATS)
	e.nc, err = nats.Connect(e.ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	e.js, _ = jetstream.New(e.nc)
	if err := workstream.EnsureStreams(context.Background(), e.js, workstream.StreamSettings{Partitions: 4, Replicas: 1, MaxAge: time.Hour, Duplicates: 20 * time.Minute, DLQMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.sources = newFakeSources(t)
	pc := sarama.NewConfig()
	pc.Producer.Return.Successes = true
	pc.Producer.RequiredAcks = sarama.WaitForAll
	pc.Producer.MaxMessageBytes = maxKafkaMessage
	if e.producer, err = sarama.NewSyncProducer(e.brokers, pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.producer.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener logs:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) startNATS() {
	e.t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: e.natsPort, JetStream: true, StoreDir: e.natsDir, NoSigs: true}
	if e.natsOpts != nil {
		e.natsOpts(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		e.t.Fatal("nats did not start")
	}
	e.ns = ns
}

func (e *env) stopNATS() {
	if e.ns != nil {
		e.ns.Shutdown()
		e.ns.WaitForShutdown()
	}
}

// config is the listener's configuration for this environment.
func (e *env) config() app.Config {
	c, err := app.LoadConfig()
	if err != nil {
		e.t.Fatal(err)
	}
	c.Kafka.Brokers = e.brokers
	c.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", e.natsPort)
	c.Sources.URL, c.Sources.PSK = e.sources.URL, "test-psk"
	c.MetricsPort = 0
	c.CommitEvery, c.RetryBase, c.RetryMax = 50*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
	c.PublishTimeout, c.ShutdownGrace = time.Second, 5*time.Second
	return c
}

// runListener runs the real listener in-process until the returned stop.
func (e *env) runListener(c app.Config) (l *app.Listener, stop func()) {
	e.t.Helper()
	log, _ := logging.New(e.logs, config.Log{Level: "info", Format: "json"}, "cloudoreg-listener")
	l, err := app.New(c, log.Entry)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("listener: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("listener did not stop within 30s")
			}
		})
	}
	e.t.Cleanup(stop)
	return l, stop
}

// produce writes one event the way Sources does; it returns its coordinates
// as the listener names them (the Nats-Msg-Id).
func (e *env) produce(org, eventType, value string) string {
	e.t.Helper()
	msg := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(org), Value: sarama.StringEncoder(value)}
	msg.Headers = []sarama.RecordHeader{
		{Key: []byte("x-rh-sources-org-id"), Value: []byte(org)},
		{Key: []byte("event_type"), Value: []byte(eventType)},
		{Key: []byte("encoding"), Value: []byte("json")},
	}
	return e.send(msg)
}

func (e *env) send(msg *sarama.ProducerMessage) string {
	e.t.Helper()
	p, o, err := e.producer.SendMessage(msg)
	if err != nil {
		e.t.Fatalf("produce: %v", err)
	}
	return fmt.Sprintf("%s/%d/%d", topic, p, o)
}

// streamed is one work message as stored.
type streamed struct {
	seq      uint64
	subject  string
	sourceID string
	origin   string
	kind     string
	appID    string
	authID   string
}

// awaitStream waits until the work stream holds n messages, watching it with
// an ordered consumer (no polling), and returns them in stream order.
func (e *env) awaitStream(n int) []streamed {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, work.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []streamed
	for len(out) < n {
		m, err := cons.Next(jetstream.FetchMaxWait(waitLimit))
		if err != nil {
			e.t.Fatalf("work stream has %d messages, want %d: %v", len(out), n, err)
		}
		meta, _ := m.Metadata()
		out = append(out, streamed{
			seq: meta.Sequence.Stream, subject: m.Subject(), origin: m.Headers().Get(workstream.HeaderOrigin),
			sourceID: m.Headers().Get(workstream.HeaderSourceID), kind: m.Headers().Get(workstream.HeaderKind),
			appID: m.Headers().Get(workstream.HeaderApplicationID), authID: m.Headers().Get(workstream.HeaderAuthenticationID),
		})
	}
	return out
}

// streamCount is how many messages the work stream holds now.
func (e *env) streamCount() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), work.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// checkExactlyOnce asserts the stream holds each wanted origin exactly once
// and nothing else.
func checkExactlyOnce(t testing.TB, got []streamed, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range got {
		seen[m.origin]++
	}
	for _, o := range want {
		if seen[o] != 1 {
			t.Errorf("offset %s reached the work stream %d times, want exactly once", o, seen[o])
		}
		delete(seen, o)
	}
	for o, n := range seen {
		t.Errorf("unexpected work message from %s (%d times)", o, n)
	}
}

// checkSourceOrder asserts every source's messages are in Kafka order.
func checkSourceOrder(t testing.TB, got []streamed) {
	t.Helper()
	last := map[string]int64{}
	for _, m := range got {
		parts := strings.Split(m.origin, "/")
		off, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		key := m.sourceID + "@" + parts[len(parts)-2]
		if prev, ok := last[key]; ok && off <= prev {
			t.Errorf("source %s: offset %d stored after offset %d", m.sourceID, off, prev)
		}
		last[key] = off
	}
}

// fakeSources speaks the Sources applications endpoint over loopback HTTP.
type fakeSources struct {
	*httptest.Server
	mu    sync.Mutex
	apps  map[string]string // application id -> source id
	codes map[string]int    // application id -> HTTP status to answer instead
	calls []string
	fail  int // answer the next fail requests with 503
}

func newFakeSources(t testing.TB) *fakeSources {
	f := &fakeSources{apps: map[string]string{}, codes: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSources) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("x-rh-sources-psk") != "test-psk" || r.Header.Get("x-rh-sources-org-id") == "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.fail > 0 {
		f.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/api/sources/v3.1/applications/")
	if code := f.codes[id]; code != 0 {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"errors":[{"status":"`+strconv.Itoa(code)+`","detail":"refused"}]}`)
		return
	}
	source, ok := f.apps[id]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errors":[{"status":"404","detail":"Application not found"}]}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "source_id": source, "application_type_id": "5", "paused_at": nil})
}

func (f *fakeSources) set(appID, sourceID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sourceID == "" {
		delete(f.apps, appID)
	} else {
		f.apps[appID] = sourceID
	}
}

// answer makes Sources answer code for the application.
func (f *fakeSources) answer(appID string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.codes[appID] = code
}

func (f *fakeSources) failNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = n
}

func (f *fakeSources) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func metric(t testing.TB, addr, series string) float64 { return testkit.Metric(t, addr, series) }

func awaitHTTP(t testing.TB, url string, want int) { testkit.AwaitHTTP(t, url, want, waitLimit) }
