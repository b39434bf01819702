package sources

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	testPSK     = "psk-7f3c1e9a-never-log-me"
	waitTimeout = 20 * time.Second
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one stand-in on a fresh kfake cluster with a reader of the event
// stream, everything on loopback.
type env struct {
	t       *testing.T
	brokers []string
	srv     *Server
	web     *httptest.Server
	logs    *syncBuffer
	events  chan *sarama.ConsumerMessage
}

type envOption func(*Config)

func withAvailabilityURL(u string) envOption { return func(c *Config) { c.AvailabilityCheckURL = u } }

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, DefaultEventsTopic, DefaultStatusTopic))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(cluster.Close)

	logs := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetLevel(logrus.TraceLevel)
	log.SetFormatter(&logrus.JSONFormatter{})

	cfg := Config{Brokers: cluster.ListenAddrs(), PSK: testPSK, Log: log}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	web := httptest.NewServer(srv)
	t.Cleanup(web.Close)

	e := &env{t: t, brokers: cluster.ListenAddrs(), srv: srv, web: web, logs: logs, events: make(chan *sarama.ConsumerMessage, 1000)}
	e.readEvents()
	return e
}

// readEvents consumes every partition of the event stream from the start.
// One goroutine per partition keeps each partition's order, and a tenant's
// events all share one partition (same key).
func (e *env) readEvents() {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.Version
	// Short fetch waits keep the tests quick; correctness does not depend on it.
	cfg.Consumer.MaxWaitTime = 20 * time.Millisecond
	consumer, err := sarama.NewConsumer(e.brokers, cfg)
	if err != nil {
		e.t.Fatalf("event consumer: %v", err)
	}
	parts, err := consumer.Partitions(DefaultEventsTopic)
	if err != nil {
		e.t.Fatalf("partitions: %v", err)
	}
	var wg sync.WaitGroup
	var pcs []sarama.PartitionConsumer
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(DefaultEventsTopic, p, sarama.OffsetOldest)
		if err != nil {
			e.t.Fatalf("consume partition %d: %v", p, err)
		}
		pcs = append(pcs, pc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range pc.Messages() {
				e.events <- m
			}
		}()
	}
	e.t.Cleanup(func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		wg.Wait()
		_ = consumer.Close()
	})
}

// nextEvents returns the next n events whose key is key, in order.
func (e *env) nextEvents(key string, n int) []*sarama.ConsumerMessage {
	e.t.Helper()
	var out []*sarama.ConsumerMessage
	deadline := time.After(waitTimeout)
	for len(out) < n {
		select {
		case m := <-e.events:
			if string(m.Key) == key {
				out = append(out, m)
			}
		case <-deadline:
			e.t.Fatalf("timed out waiting for %d events with key %q, got %d: %v", n, key, len(out), eventTypes(out))
		}
	}
	return out
}

// expectNoMoreEvents proves that nothing else was raised for the tenant: it
// makes a change that raises one known event and checks that this marker
// is the very next event of the tenant.
func (e *env) expectNoMoreEvents(h http.Header, key string) {
	e.t.Helper()
	name := "marker-" + time.Now().Format("150405.000000000")
	e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/sources", h,
		map[string]any{"name": name, "source_type_id": "7"})
	ev := e.nextEvents(key, 1)[0]
	if got := header(ev, event.HeaderEventType); got != evSourceCreate || payload(e.t, ev)["name"] != name {
		e.t.Fatalf("unexpected event before the marker: %s %s", got, ev.Value)
	}
}

func eventTypes(ms []*sarama.ConsumerMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, header(m, event.HeaderEventType))
	}
	return out
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func headerKeys(m *sarama.ConsumerMessage) []string {
	var out []string
	for _, h := range m.Headers {
		out = append(out, string(h.Key))
	}
	return out
}

// payload decodes an event value keeping numbers distinguishable from
// strings (json.Number vs string).
func payload(t *testing.T, m *sarama.ConsumerMessage) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(m.Value))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("event value %s: %v", m.Value, err)
	}
	return v
}

// do sends a request and returns the status and body.
func (e *env) do(method, path string, h http.Header, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.web.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.web.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (e *env) mustDo(want int, method, path string, h http.Header, body any) []byte {
	e.t.Helper()
	got, out := e.do(method, path, h, body)
	if got != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, out)
	}
	return out
}

func (e *env) getJSON(path string, h http.Header) map[string]any {
	e.t.Helper()
	return decode(e.t, e.mustDo(http.StatusOK, http.MethodGet, path, h, nil))
}

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

func orgHeaders(org string) http.Header {
	h := http.Header{}
	h.Set(event.HeaderOrgID, org)
	return h
}

// identityHeaders is what the console sends: an identity, no tenant headers.
func identityHeaders(org, account string) http.Header {
	raw, _ := json.Marshal(map[string]any{"identity": map[string]any{
		"org_id": org, "account_number": account, "type": "User",
		"internal": map[string]any{"org_id": org},
	}})
	h := http.Header{}
	h.Set(event.HeaderIdentity, base64.StdEncoding.EncodeToString(raw))
	return h
}

func withPSK(h http.Header, psk string) http.Header {
	h = h.Clone()
	h.Set(event.HeaderPSK, psk)
	return h
}

// created is the ids a bulk create returned.
type created struct {
	sourceID, appID, authID string
}

// bulkCloudMeter creates the source Cloudoreg cares about: an amazon source
// with a cloud-meter application and its ARN authentication.
func (e *env) bulkCloudMeter(h http.Header, name string) created {
	e.t.Helper()
	out := decode(e.t, e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/bulk_create", h, map[string]any{
		"sources":      []any{map[string]any{"name": name, "source_type_name": "amazon"}},
		"applications": []any{map[string]any{"source_name": name, "application_type_name": "cloud-meter"}},
		"authentications": []any{map[string]any{
			"resource_type": "application", "resource_name": "cloud-meter", "authtype": "cloud-meter-arn",
			"username": "arn:aws:iam::123456789012:role/cloud-meter-role", "password": "",
			"extra": map[string]any{"external_id": "ext-" + name},
		}},
	}))
	first := func(kind string) string {
		items, _ := out[kind].([]any)
		if len(items) != 1 {
			e.t.Fatalf("bulk_create %s: %v", kind, out)
		}
		id, ok := items[0].(map[string]any)["id"].(string)
		if !ok {
			e.t.Fatalf("bulk_create %s id is not a string: %v", kind, items[0])
		}
		return id
	}
	return created{sourceID: first("sources"), appID: first("applications"), authID: first("authentications")}
}

func awaitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// produceStatus writes a message to the status topic like Cloudoreg does.
func (e *env) produceStatus(key string, headers [][2]string, value any) {
	e.t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = kafka.Version
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer(e.brokers, cfg)
	if err != nil {
		e.t.Fatalf("status producer: %v", err)
	}
	defer p.Close()
	msg := &sarama.ProducerMessage{Topic: DefaultStatusTopic}
	if key != "" {
		msg.Key = sarama.StringEncoder(key)
	}
	if value != nil {
		raw, err := json.Marshal(value)
		if err != nil {
			e.t.Fatal(err)
		}
		msg.Value = sarama.ByteEncoder(raw)
	}
	for _, h := range headers {
		msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
	}
	if _, _, err := p.SendMessage(msg); err != nil {
		e.t.Fatalf("produce status: %v", err)
	}
}

func mustContainAll(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%q does not contain %q", s, sub)
		}
	}
}
