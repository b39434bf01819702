// Package e2e runs the real listener and processors in-process against the
// local stack (kfake, embedded NATS, Sources/RHSM/STS stand-ins), all over
// real protocols on loopback, and checks what a customer and RHSM end up
// seeing. Waits are on state changes (the Sources stand-in's Await, KV
// watches), never on sleeps.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	lapp "github.com/cloudoreg/cloudoreg/listener/app"
	papp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/logging"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// waitLimit bounds every wait: generous for a loaded 2-core CI machine under
// the race detector; a healthy run takes a fraction of it.
const waitLimit = 90 * time.Second

// Org ids used by the tests.
const (
	orgA = "1234567"
	orgB = "7654321"
)

// Roles of scripts/sts-trust.json.
const (
	roleTrusted  = "arn:aws:iam::123456789012:role/cloud-meter-trusted"
	roleDenied   = "arn:aws:iam::210987654321:role/cloud-meter-denied"
	roleNoPolicy = "arn:aws:iam::345678901234:role/cloud-meter-no-policy"
	roleOpen     = "arn:aws:iam::456789012345:role/cloud-meter-open"
	demoExternal = "cloudoreg-demo-external-id"
)

type options struct {
	processors int  // how many processors start with the harness (default 1)
	noWorkers  bool // start none: the test starts them later (startProcessor)
	noListener bool // do not start the listener: the test starts it later
	listener   func(*lapp.Config)
	processor  func(*papp.Config)
}

type harness struct {
	t          *testing.T
	ctx        context.Context
	stack      *stack.Stack
	logs       *testkit.SyncBuffer
	js         jetstream.JetStream
	listener   *lapp.Listener
	processors []*papp.Processor
	stops      []func()

	privatePorts  []int
	tuneProcessor func(*papp.Config)
	stopListener  func() // stops the listener (once): events stay in Kafka
}

// start runs the stack, the processors and the listener; everything stops
// at the end of the test.
func start(t *testing.T, o options) *harness {
	t.Helper()
	if o.processors == 0 {
		o.processors = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, ctx: ctx, logs: &testkit.SyncBuffer{}}
	t.Cleanup(func() {
		cancel()
		for i := len(h.stops) - 1; i >= 0; i-- {
			h.stops[i]()
		}
		if t.Failed() {
			t.Logf("logs of the failed run:\n%s", h.logs.String())
		}
	})
	privatePorts := testkit.FreePorts(t, o.processors)
	h.privatePorts = privatePorts
	slog := logrus.New()
	slog.SetOutput(h.logs)
	st, err := stack.Start(ctx, stack.Config{
		Partitions: 3, PSK: "e2e-psk",
		EventsTopic: "platform.sources.event-stream", StatusTopic: "platform.sources.status",
		AvailabilityCheckURL: fmt.Sprintf("http://127.0.0.1:%d/internal/api/cloudigrade/v1/availability_status", privatePorts[0]),
	}, slog)
	if err != nil {
		t.Fatalf("local stack: %v", err)
	}
	h.stack = st
	h.stops = append(h.stops, st.Close)
	nc, err := nats.Connect(st.NATSURL)
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	h.stops = append(h.stops, nc.Close)
	h.js, _ = jetstream.New(nc)
	h.tuneProcessor = o.processor
	if o.noWorkers {
		// Processors ran before and declared the stream; now none runs.
		c := h.processorConfig(0)
		if err := workstream.EnsureStreams(ctx, h.js, c.Work); err != nil {
			t.Fatalf("declaring the work stream: %v", err)
		}
	} else {
		for i := 0; i < o.processors; i++ {
			h.startProcessor(i, privatePorts[i])
		}
	}
	if !o.noListener {
		h.startListener(o.listener)
	}
	return h
}

func (h *harness) log(program string) *logrus.Entry {
	l, err := logging.New(h.logs, config.Log{Level: "debug", Format: "json"}, "cloudoreg-"+program)
	if err != nil {
		h.t.Fatal(err)
	}
	return l.Entry
}

// processorConfig is the processors' configuration for this harness.
func (h *harness) processorConfig(privatePort int) papp.Config {
	h.t.Helper()
	c, err := papp.LoadConfig()
	if err != nil {
		h.t.Fatal(err)
	}
	c.Kafka.Brokers = []string{h.stack.KafkaAddr}
	c.NATS.URL = h.stack.NATSURL
	c.Sources.URL, c.Sources.PSK = h.stack.SourcesURL, "e2e-psk"
	c.STSEndpoint, c.RHSMURL = h.stack.STSURL, h.stack.RHSMURL
	c.MetricsPort, c.PrivatePort = 0, privatePort
	c.Work.Partitions = 4
	c.AckWait, c.MaxDeliver = 5*time.Second, 5
	c.RetryInPlace, c.RetryBase, c.RetryMax = 2*time.Second, 50*time.Millisecond, 400*time.Millisecond
	c.RetryBudget, c.ParkBase, c.ParkMax, c.SweepEvery = 15*time.Second, 200*time.Millisecond, time.Second, 100*time.Millisecond
	c.ShutdownGrace = 5 * time.Second
	c.ReconcileEvery = 0 // a test that wants it sets it: it adds status messages
	if h.tuneProcessor != nil {
		h.tuneProcessor(&c)
	}
	return c
}

func (h *harness) startProcessor(i, privatePort int) {
	h.t.Helper()
	c := h.processorConfig(privatePort)
	p, err := papp.New(c, h.log("processor-"+strconv.Itoa(i+1)))
	if err != nil {
		h.t.Fatalf("processor: %v", err)
	}
	h.processors = append(h.processors, p)
	h.stops = append(h.stops, run(h.t, "processor", p.Run))
	h.awaitReady(p.OpsAddr())
}

func (h *harness) startListener(tune func(*lapp.Config)) {
	h.t.Helper()
	c, err := lapp.LoadConfig()
	if err != nil {
		h.t.Fatal(err)
	}
	c.Kafka.Brokers = []string{h.stack.KafkaAddr}
	c.NATS.URL = h.stack.NATSURL
	c.Sources.URL, c.Sources.PSK = h.stack.SourcesURL, "e2e-psk"
	c.MetricsPort = 0
	c.CommitEvery, c.RetryBase, c.RetryMax, c.ShutdownGrace = 100*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond, 5*time.Second
	if tune != nil {
		tune(&c)
	}
	l, err := lapp.New(c, h.log("listener"))
	if err != nil {
		h.t.Fatalf("listener: %v", err)
	}
	h.listener = l
	h.stopListener = sync.OnceFunc(run(h.t, "listener", l.Run))
	h.stops = append(h.stops, h.stopListener)
	h.awaitReady(l.OpsAddr())
}

// run starts fn in the background; the returned stop waits for it to return.
func run(t *testing.T, name string, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop within 30s", name)
		}
	}
}

// awaitReady waits for /readyz of a program to answer 200.
func (h *harness) awaitReady(addr string) {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never became ready", addr)
		}
	}
}

// created is what bulk_create made.
type created struct{ SourceID, AppID, AuthID string }

// sourceSpec describes a source to create through the Sources REST API.
type sourceSpec struct {
	org, name, appType, authType, arn, externalID string
}

// createSource creates a source with one application and one authentication
// via bulk_create, as the console does.
func (h *harness) createSource(s sourceSpec) created {
	h.t.Helper()
	if s.appType == "" {
		s.appType = "cloud-meter"
	}
	if s.authType == "" {
		s.authType = "cloud-meter-arn"
	}
	auth := map[string]any{"resource_type": "application", "resource_name": s.appType, "authtype": s.authType, "username": s.arn}
	if s.externalID != "" {
		auth["extra"] = map[string]any{"external_id": s.externalID}
	}
	body := map[string]any{
		"sources":         []any{map[string]any{"name": s.name, "source_type_name": "amazon"}},
		"applications":    []any{map[string]any{"source_name": s.name, "application_type_name": s.appType}},
		"authentications": []any{auth},
	}
	var out struct {
		Sources, Applications, Authentications []struct{ ID string }
	}
	h.rest(http.MethodPost, "/api/sources/v3.1/bulk_create", s.org, body, http.StatusCreated, &out)
	if len(out.Sources) != 1 || len(out.Applications) != 1 || len(out.Authentications) != 1 {
		h.t.Fatalf("bulk_create returned %+v", out)
	}
	return created{out.Sources[0].ID, out.Applications[0].ID, out.Authentications[0].ID}
}

// rest calls the Sources stand-in and decodes the answer into out.
func (h *harness) rest(method, path, org string, body any, want int, out any) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, h.stack.SourcesURL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	setTenant(req.Header, org)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		h.t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// awaitApp waits until the application satisfies pred.
func (h *harness) awaitApp(appID string, what string, pred func(sources.Application) bool) sources.Application {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, waitLimit)
	defer cancel()
	var last sources.Application
	err := h.stack.Sources.Await(ctx, func(s sources.Snapshot) bool {
		last = s.Applications[appID]
		return pred(last)
	})
	if err != nil {
		h.t.Fatalf("application %s never %s; last seen %+v", appID, what, last)
	}
	return last
}

// awaitStatus waits for the application's first availability outcome.
func (h *harness) awaitStatus(appID string) sources.Application {
	h.t.Helper()
	return h.awaitApp(appID, "got a status", func(a sources.Application) bool {
		return a.AvailabilityStatus == "available" || a.AvailabilityStatus == "unavailable"
	})
}

// awaitCounted waits until a processor has counted work of kind that ended
// in state. Use it for outcomes that leave the record alone (other_org, or
// not_ours after Cloudoreg's own work), which awaitOutcome cannot see.
func (h *harness) awaitCounted(kind, state string) {
	h.t.Helper()
	key := fmt.Sprintf(`cloudoreg_processor_work_total{code="",kind=%q,state=%q}`, kind, state)
	opsAwait(h.t, h.processors[0].OpsAddr(), "a "+state+" outcome of "+kind, func(s opsScrape) bool { return s.value(key) >= 1 })
}

// awaitOutcome waits for the processor's outcome record of a source (the KV
// record an operator reads) to satisfy pred, by watching the key.
func (h *harness) awaitOutcome(sourceID string, pred func(map[string]any) bool) map[string]any {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, waitLimit)
	defer cancel()
	kv, err := h.js.KeyValue(ctx, "CLOUDOREG_SOURCES")
	if err != nil {
		h.t.Fatalf("outcome bucket: %v", err)
	}
	w, err := kv.Watch(ctx, "source."+sourceID)
	if err != nil {
		h.t.Fatalf("watch outcome: %v", err)
	}
	defer func() { _ = w.Stop() }()
	var last map[string]any
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue // initial values delivered
			}
			last = map[string]any{}
			_ = json.Unmarshal(e.Value(), &last)
			if pred(last) {
				return last
			}
		case <-ctx.Done():
			h.t.Fatalf("outcome of source %s never matched; last %v", sourceID, last)
		}
	}
}

// registrations lists what RHSM holds for an org, as "account/source".
func (h *harness) registrations(org string) []string {
	var out []string
	for _, a := range h.stack.RHSM.Registrations()[org] {
		out = append(out, a.ID+"/"+a.SourceID)
	}
	return out
}

// produce writes one raw message to the event stream, as Sources would.
func (h *harness) produce(key string, headers map[string]string, value []byte) {
	h.t.Helper()
	c := sarama.NewConfig()
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer([]string{h.stack.KafkaAddr}, c)
	if err != nil {
		h.t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	msg := &sarama.ProducerMessage{Topic: "platform.sources.event-stream", Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)}
	for k, v := range headers {
		msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	if _, _, err := p.SendMessage(msg); err != nil {
		h.t.Fatalf("produce: %v", err)
	}
}

// setTenant sets the tenant headers; "acct:N" names an account-only tenant.
func setTenant(h http.Header, tenant string) {
	if acct, ok := strings.CutPrefix(tenant, "acct:"); ok {
		h.Set(event.HeaderAccount, acct)
		return
	}
	h.Set(event.HeaderOrgID, tenant)
}

// produceEvent writes a Sources-shaped event for org to the event stream.
func (h *harness) produceEvent(org, eventType, payload string) {
	h.t.Helper()
	h.produce(org, map[string]string{"event_type": eventType, event.HeaderOrgID: org, "encoding": "json"}, []byte(payload))
}

// statuses lists the status values Sources received for an application.
func (h *harness) statuses(appID string) []string {
	return statusesOf(h.stack.Sources.StatusLog(), appID)
}

// statusesOf lists the status values of an application in a status log.
func statusesOf(log []sources.StatusRecord, appID string) []string {
	var out []string
	for _, r := range log {
		var v struct {
			ResourceID string `json:"resource_id"`
			Status     string `json:"status"`
			Error      string `json:"error"`
		}
		if json.Unmarshal(r.Value, &v) == nil && v.ResourceID == appID {
			out = append(out, v.Status+" "+v.Error)
		}
	}
	return out
}

// deadLetters returns the headers of every dead letter.
func (h *harness) deadLetters() []nats.Header {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, waitLimit)
	defer cancel()
	s, err := h.js.Stream(ctx, "CLOUDOREG_DLQ")
	if err != nil {
		h.t.Fatalf("dead-letter stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []nats.Header
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replayed or purged
		}
		if err != nil {
			h.t.Fatalf("dead letter %d: %v", seq, err)
		}
		out = append(out, m.Header)
	}
	return out
}

// sourcesApp is an application as the Sources stand-in stores it.
type sourcesApp = sources.Application

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func metric(t *testing.T, addr, series string) float64 { return testkit.Metric(t, addr, series) }
