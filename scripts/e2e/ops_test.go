package e2e

// What an operator and OpenShift look at: the metrics of both programs after
// a run that touches every outcome, and the probes through NATS and Kafka
// trouble. Helpers of this file are prefixed with ops to stay clear of the
// other test files of the package.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	lapp "github.com/cloudoreg/cloudoreg/listener/app"
	papp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// TestOpsMetrics runs available, unavailable, ignored, poison, not-found
// and undecodable work through the system with throttled STS and a failing
// RHSM call, then scrapes both programs: the naming rules hold, no label
// names or carries a tenant, source or ARN, and every metric the operator
// section of the README promises is there with the value the run implies.
func TestOpsMetrics(t *testing.T) {
	h := start(t, options{listener: func(c *lapp.Config) { c.LagInterval = 100 * time.Millisecond }})
	// Transient failures: the next two STS requests are throttled, the next
	// RHSM request fails with 503. Only the processor calls STS and RHSM.
	h.stack.STS.Faults().Set(faults.Fault{Status: 400, Code: "Throttling", Count: 2})
	h.stack.RHSM.Faults().Set(faults.Fault{Status: 503, Count: 1})

	specs := []struct {
		name, arn, ext string
		code           status.Code // "" = available
	}{
		{"trusted", roleTrusted, demoExternal, ""},
		{"open", roleOpen, "", ""},
		{"denied", roleDenied, "", status.CG3002},
		{"bad-arn", "arn:aws:iam::12345:role/too-short", "", status.CG1004},
	}
	made := map[string]created{}
	for _, s := range specs {
		made[s.name] = h.createSource(sourceSpec{org: orgA, name: s.name, arn: s.arn, externalID: s.ext})
	}
	// Ignored and poison events, as TestIgnoredAndPoisonEvents produces them.
	hdr := func(eventType string) map[string]string {
		return map[string]string{"event_type": eventType, "x-rh-sources-org-id": orgA, "x-rh-identity": fixtureIdentity(t), "encoding": "json"}
	}
	h.produce(orgA, hdr("Application.update"), []byte(`{"id":777021,"source_id":777011,"application_type_id":2}`))
	h.produce(orgA, map[string]string{"x-rh-sources-org-id": orgA}, []byte(`{"id":777011}`))
	h.produce(orgA, hdr("ApplicationAuthentication.create"), []byte(`not json`))
	h.produce(orgA, map[string]string{"event_type": "ApplicationAuthentication.create"}, []byte(`{"id":1,"application_id":777021,"authentication_id":777041}`))
	h.produce(orgA, map[string]string{"event_type": "Source.destroy", "x-rh-identity": "%%%not-base64"}, []byte(`{"id":777011}`))
	h.produce(orgA, hdr("Source.destroy"), []byte(`{"id":"777011.>"}`))
	// Work straight into the stream: a source Sources does not know (a
	// not-found call), and a message no processor can decode (a dead letter).
	const goneSource, undecodableSource = "990001", "990002"
	gone := work.Message{Kind: "Application.unpause", SourceID: goneSource, ApplicationID: "990011", Origin: "ops-test/gone"}
	gone.Tenant.OrgID = orgA
	if _, err := h.js.PublishMsg(h.ctx, workstream.NewMsg(gone, "")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.js.PublishMsg(h.ctx, &nats.Msg{Subject: work.Subject(undecodableSource), Header: nats.Header{workstream.HeaderSourceID: []string{undecodableSource}}}); err != nil {
		t.Fatal(err)
	}

	for _, s := range specs {
		app := h.awaitStatus(made[s.name].AppID)
		want, wantErr := status.Available, ""
		if s.code != "" {
			want, wantErr = status.Unavailable, s.code.Text()
		}
		if app.AvailabilityStatus != want || app.AvailabilityStatusError != wantErr {
			t.Errorf("%s: %q %q, want %q %q", s.name, app.AvailabilityStatus, app.AvailabilityStatusError, want, wantErr)
		}
	}
	h.awaitOutcome(goneSource, func(r map[string]any) bool { return r["state"] == "not_ours" })
	l, p := h.listener.OpsAddr(), h.processors[0].OpsAddr()
	opsAwait(t, p, "one undecodable dead letter", func(s opsScrape) bool {
		return s.value(`cloudoreg_processor_dead_letters_total{reason="undecodable"}`) == 1
	})
	// Every status the processor counts is one Sources received.
	opsAwait(t, p, "status messages counted as Sources received them", func(s opsScrape) bool {
		got := opsStatusCounts(h)
		return s.value(`cloudoreg_processor_status_messages_total{status="available"}`) == float64(got[status.Available]) &&
			s.value(`cloudoreg_processor_status_messages_total{status="unavailable"}`) == float64(got[status.Unavailable])
	})
	// Everything produced was forwarded and committed: no lag on any partition.
	opsAwait(t, l, "consumer lag 0 on all 3 partitions", func(s opsScrape) bool {
		for part := 0; part < 3; part++ {
			v, ok := s.lookup(`cloudoreg_listener_consumer_lag{partition="` + strconv.Itoa(part) + `"}`)
			if !ok || v != 0 {
				return false
			}
		}
		return true
	})

	ls, ps := opsScrapeMetrics(t, l), opsScrapeMetrics(t, p)

	// Naming rules and no tenant, source or ARN in any label.
	forbidden := map[string]string{orgA: "org id", goneSource: "source id", undecodableSource: "source id", demoExternal: "external id"}
	for _, s := range specs {
		forbidden[made[s.name].SourceID] = "source id of " + s.name
		forbidden[made[s.name].AppID] = "application id of " + s.name
		forbidden[made[s.name].AuthID] = "authentication id of " + s.name
		if s.arn != "" {
			forbidden[s.arn] = "ARN"
			if acct := strings.Split(s.arn, ":"); len(acct) > 4 {
				forbidden[acct[4]] = "AWS account of " + s.name
			}
		}
	}
	for name, s := range map[string]opsScrape{"listener": ls, "processor": ps} {
		opsCheckConventions(t, name, s, forbidden, 3)
		for _, secret := range []string{demoExternal, fixtureIdentity(t), "arn:aws", "e2e-psk"} {
			if strings.Contains(s.raw, secret) {
				t.Errorf("%s /metrics contains %q", name, secret)
			}
		}
	}

	// Listener: consumed events per type and outcome.
	opsExpect(t, "listener", ls, map[string]func(float64) bool{
		`cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="routed",reason=""}`:             opsAtLeast(len(specs)),
		`cloudoreg_listener_events_total{event_type="Application.update",outcome="ignored",reason=""}`:                          opsAtLeast(1),
		`cloudoreg_listener_events_total{event_type="Source.create",outcome="ignored",reason=""}`:                               opsAtLeast(len(specs)),
		`cloudoreg_listener_events_total{event_type="none",outcome="ignored",reason=""}`:                                        opsExactly(1),
		`cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="skipped",reason="bad_payload"}`: opsExactly(1),
		`cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="skipped",reason="no_tenant"}`:   opsExactly(1),
		`cloudoreg_listener_events_total{event_type="Source.destroy",outcome="skipped",reason="bad_identity"}`:                  opsExactly(1),
		`cloudoreg_listener_events_total{event_type="Source.destroy",outcome="skipped",reason="bad_id"}`:                        opsExactly(1),
		`cloudoreg_listener_published_total`:                 opsAtLeast(len(specs)),
		`cloudoreg_listener_publish_seconds_sum`:             opsPositive,
		`cloudoreg_listener_inflight_publishes`:              opsExactly(0),
		`cloudoreg_listener_retries_total{target="nats"}`:    opsExactly(0),
		`cloudoreg_listener_retries_total{target="resolve"}`: opsExactly(0),
	})
	// Every acknowledged publish was timed (no shutdown drain in this run).
	if c, n := ls.value(`cloudoreg_listener_publish_seconds_count`), ls.value(`cloudoreg_listener_published_total`); c != n {
		t.Errorf("listener: publish_seconds_count %v != published_total %v", c, n)
	}
	if b := ls.value(`cloudoreg_listener_publish_seconds_bucket{le="+Inf"}`); b != ls.value(`cloudoreg_listener_publish_seconds_count`) {
		t.Errorf("listener: publish_seconds +Inf bucket %v != count", b)
	}

	// Processor: work by outcome and code, calls per target, retries, dead
	// letters, status messages.
	workCount := func(state, code string) float64 {
		return ps.sum("cloudoreg_processor_work_total", map[string]string{"state": state, "code": code})
	}
	for _, c := range []struct {
		state, code string
		min         int
	}{{"available", "", 2}, {"unavailable", "CG3002", 1}, {"unavailable", "CG1004", 1}, {"not_ours", "", 1}} {
		if got := workCount(c.state, c.code); got < float64(c.min) {
			t.Errorf("processor: work_total{state=%q,code=%q} = %v, want at least %d", c.state, c.code, got, c.min)
		}
	}
	for _, target := range []string{"sources", "sts", "rhsm", "kafka"} {
		n := ps.sum("cloudoreg_processor_external_call_seconds_count", map[string]string{"target": target})
		s := ps.sum("cloudoreg_processor_external_call_seconds_sum", map[string]string{"target": target})
		if n < 1 || s <= 0 {
			t.Errorf("processor: external_call_seconds for %s: count %v sum %v, want calls timed", target, n, s)
		}
	}
	opsExpect(t, "processor", ps, map[string]func(float64) bool{
		`cloudoreg_processor_external_call_errors_total{kind="transient",operation="verify",target="sts"}`: opsExactly(2),
		`cloudoreg_processor_external_call_errors_total{kind="permanent",operation="verify",target="sts"}`: opsAtLeast(1),
		`cloudoreg_processor_retries_total{target="sts"}`:                                                  opsExactly(2),
		`cloudoreg_processor_retries_total{target="rhsm"}`:                                                 opsExactly(1),
		`cloudoreg_processor_dead_letters_total{reason="undecodable"}`:                                     opsExactly(1),
		`cloudoreg_processor_dead_letters_total{reason="budget_spent"}`:                                    opsExactly(0),
		`cloudoreg_processor_dead_letters_total{reason="internal"}`:                                        opsExactly(0),
		`cloudoreg_processor_dead_letters_total{reason="max_deliveries"}`:                                  opsExactly(0),
		`cloudoreg_processor_status_messages_total{status="available"}`:                                    opsAtLeast(2),
		`cloudoreg_processor_status_messages_total{status="unavailable"}`:                                  opsAtLeast(2),
		`cloudoreg_processor_parked_total`:                                                                 opsExactly(0),
		`cloudoreg_processor_work_seconds_sum`:                                                             opsPositive,
	})
	if n := ps.sum("cloudoreg_processor_external_call_errors_total", map[string]string{"target": "rhsm", "kind": "transient"}); n != 1 {
		t.Errorf("processor: %v transient RHSM errors, want the 1 injected", n)
	}
	if n := ps.sum("cloudoreg_processor_external_call_errors_total", map[string]string{"target": "sources", "kind": "not_found"}); n < 1 {
		t.Errorf("processor: no not_found error for Sources (source %s is unknown to it)", goneSource)
	}
	// Sources calls are counted as made: the cached application type is no
	// call (the stand-in records every request that reaches it).
	typeCalls := 0
	for _, c := range h.stack.Sources.Calls() {
		if strings.HasSuffix(c.Path, "/application_types") {
			typeCalls++
		}
	}
	if n := ps.value(`cloudoreg_processor_external_call_seconds_count{operation="application_type",target="sources"}`); n != float64(typeCalls) || typeCalls == 0 {
		t.Errorf("processor: %v application type lookups timed, Sources received %d", n, typeCalls)
	}
	// Every status message was one timed Kafka call, none failed.
	if n, m := ps.value(`cloudoreg_processor_external_call_seconds_count{operation="status",target="kafka"}`),
		ps.sum("cloudoreg_processor_status_messages_total", nil); n != m {
		t.Errorf("processor: %v status sends timed, %v status messages counted", n, m)
	}
}

// TestOpsProbesThroughNATSOutage: /healthz answers 200 all along; /readyz
// is 200 once running, 503 naming nats while NATS is down (for the listener
// and the processor), 200 again when it is back; the listener's consumer
// lag shows the stall, and an event of the outage is not lost.
func TestOpsProbesThroughNATSOutage(t *testing.T) {
	h := start(t, options{listener: func(c *lapp.Config) { c.LagInterval = 100 * time.Millisecond }})
	addrs := map[string]string{"listener": h.listener.OpsAddr(), "processor": h.processors[0].OpsAddr()}
	for name, addr := range addrs {
		opsAwaitProbe(t, name, addr, "/healthz", 200, "ok")
		opsAwaitProbe(t, name, addr, "/readyz", 200, "ready")
	}

	natsPort := h.stack.NATS.Addr().(*net.TCPAddr).Port
	storeDir := filepath.Dir(h.stack.NATS.StoreDir())
	h.stack.NATS.Shutdown()
	h.stack.NATS.WaitForShutdown()

	for name, addr := range addrs {
		opsAwaitProbe(t, name, addr, "/readyz", 503, "nats: not connected to NATS")
		opsAwaitProbe(t, name, addr, "/healthz", 200, "ok")
	}
	// A source created during the outage waits in Kafka.
	during := h.createSource(sourceSpec{org: orgA, name: "during-outage", arn: roleTrusted, externalID: demoExternal})
	// The stalled listener's lag grows, measured at the brokers.
	opsAwait(t, addrs["listener"], "consumer lag while NATS is down", func(s opsScrape) bool {
		return s.sum("cloudoreg_listener_consumer_lag", nil) >= 1
	})

	ns, err := server.NewServer(&server.Options{ServerName: "cloudoreg-local", Host: "127.0.0.1", Port: natsPort, JetStream: true, StoreDir: storeDir, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatal("NATS did not come back")
	}
	h.stack.NATS = ns // the harness stops this one at the end
	for name, addr := range addrs {
		opsAwaitProbe(t, name, addr, "/readyz", 200, "ready")
	}
	if app := h.awaitStatus(during.AppID); app.AvailabilityStatus != status.Available {
		t.Errorf("source created during the NATS outage: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	opsAwait(t, addrs["listener"], "no consumer lag once NATS is back", func(s opsScrape) bool {
		v, ok := s.lookup(`cloudoreg_listener_consumer_lag{partition="0"}`)
		return ok && v == 0 && s.sum("cloudoreg_listener_consumer_lag", nil) == 0
	})
}

// TestOpsProcessorReadyOnlyWhenBound starts a processor before its NATS
// exists: alive at once, not ready (naming nats, kafka and consumers) until
// NATS comes, then ready.
func TestOpsProcessorReadyOnlyWhenBound(t *testing.T) {
	h := start(t, options{})
	natsPort := testkit.FreePorts(t, 2)
	c, err := papp.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	c.Kafka.Brokers = []string{h.stack.KafkaAddr}
	c.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort[0])
	c.Sources.URL, c.Sources.PSK = h.stack.SourcesURL, "e2e-psk"
	c.STSEndpoint, c.RHSMURL = h.stack.STSURL, h.stack.RHSMURL
	c.MetricsPort, c.PrivatePort = 0, natsPort[1]
	c.Work.Partitions = 2
	c.ShutdownGrace = 2 * time.Second
	p, err := papp.New(c, h.log("processor-late-nats"))
	if err != nil {
		t.Fatal(err)
	}
	// Stop the processor first, then its NATS (cleanups run last first).
	var ns *server.Server
	t.Cleanup(func() {
		if ns != nil {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	})
	t.Cleanup(run(t, "processor", p.Run))
	opsAwaitProbe(t, "processor", p.OpsAddr(), "/healthz", 200, "ok")
	body := opsAwaitProbe(t, "processor", p.OpsAddr(), "/readyz", 503, "nats: not connected to NATS")
	for _, check := range []string{"kafka: ", "consumers: "} {
		if !strings.Contains(body, check) {
			t.Errorf("/readyz before NATS is up names %q, want %s too", body, check)
		}
	}

	ns, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: natsPort[0], JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	opsAwaitProbe(t, "processor", p.OpsAddr(), "/readyz", 200, "ready")
}

// TestOpsProcessorReadinessFollowsStatusDelivery makes Kafka refuse the
// status messages: the processor turns not ready naming kafka (the listener
// stays ready), counts the failed sends, and once Kafka takes them again
// the status arrives, readiness returns and RHSM holds one registration.
func TestOpsProcessorReadinessFollowsStatusDelivery(t *testing.T) {
	h := start(t, options{})
	const statusTopic = "platform.sources.status"
	var refuse atomic.Bool
	refuse.Store(true)
	h.stack.Kafka.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		h.stack.Kafka.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if !refuse.Load() || !opsProducesTo(req, statusTopic) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			out := kmsg.NewProduceResponseTopic()
			out.Topic, out.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				part := kmsg.NewProduceResponseTopicPartition()
				part.Partition, part.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				out.Partitions = append(out.Partitions, part)
			}
			resp.Topics = append(resp.Topics, out)
		}
		return resp, nil, true
	})
	p, l := h.processors[0].OpsAddr(), h.listener.OpsAddr()

	src := h.createSource(sourceSpec{org: orgA, name: "status-refused", arn: roleTrusted, externalID: demoExternal})
	opsAwaitProbe(t, "processor", p, "/readyz", 503, "kafka: the last status message could not be delivered")
	opsAwaitProbe(t, "processor", p, "/healthz", 200, "ok")
	opsAwaitProbe(t, "listener", l, "/readyz", 200, "ready")
	if n := opsScrapeMetrics(t, p).value(`cloudoreg_processor_external_call_errors_total{kind="transient",operation="status",target="kafka"}`); n < 1 {
		t.Errorf("failed status sends counted %v times, want at least 1", n)
	}

	refuse.Store(false)
	if app := h.awaitStatus(src.AppID); app.AvailabilityStatus != status.Available {
		t.Errorf("status after Kafka took messages again: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	opsAwaitProbe(t, "processor", p, "/readyz", 200, "ready")
	if regs := h.registrations(orgA); len(regs) != 1 || regs[0] != "123456789012/"+src.SourceID {
		t.Errorf("RHSM holds %v, want exactly 123456789012/%s", regs, src.SourceID)
	}
}

func opsProducesTo(req *kmsg.ProduceRequest, topic string) bool {
	for _, t := range req.Topics {
		if t.Topic == topic {
			return true
		}
	}
	return false
}

// opsStatusCounts counts the status messages Sources received, by status.
func opsStatusCounts(h *harness) map[string]int {
	out := map[string]int{}
	for _, r := range h.stack.Sources.StatusLog() {
		var v struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(r.Value, &v) == nil && v.Status != "" {
			out[v.Status]++
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Probes

// opsAwaitProbe polls path until it answers want with a body containing
// text (a ticker and a deadline: the probe is what OpenShift polls too) and
// returns the body.
func opsAwaitProbe(t *testing.T, name, addr, path string, want int, text string) string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		resp, err := http.Get("http://" + addr + path)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			last = fmt.Sprintf("HTTP %d %q", resp.StatusCode, b)
			if resp.StatusCode == want && strings.Contains(string(b), text) {
				return string(b)
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s never answered %d with %q; last %s", name, path, want, text, last)
		}
		<-tick.C
	}
}

// ---------------------------------------------------------------------------
// Metrics: a small reader of the Prometheus text format.

type opsSample struct {
	name   string
	labels map[string]string
	value  float64
}

func (s opsSample) key() string {
	if len(s.labels) == 0 {
		return s.name
	}
	var names []string
	for k := range s.labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, k+"="+strconv.Quote(s.labels[k]))
	}
	return s.name + "{" + strings.Join(parts, ",") + "}"
}

type opsScrape struct {
	raw     string
	types   map[string]string // family -> counter, gauge, histogram, summary, untyped
	samples []opsSample
	byKey   map[string]float64
}

// lookup finds a sample by its key: the name and labels sorted by name, as
// in `name{a="1",b="2"}`.
func (s opsScrape) lookup(key string) (float64, bool) {
	v, ok := s.byKey[key]
	return v, ok
}

// value is the sample's value, 0 when absent.
func (s opsScrape) value(key string) float64 { return s.byKey[key] }

// sum adds the samples of name whose labels include match.
func (s opsScrape) sum(name string, match map[string]string) float64 {
	var total float64
	for _, smp := range s.samples {
		if smp.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if smp.labels[k] != v {
				ok = false
			}
		}
		if ok {
			total += smp.value
		}
	}
	return total
}

func opsScrapeMetrics(t *testing.T, addr string) opsScrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: HTTP %d", addr, resp.StatusCode)
	}
	s, err := opsParse(string(b))
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	return s
}

func opsParse(text string) (opsScrape, error) {
	s := opsScrape{raw: text, types: map[string]string{}, byKey: map[string]float64{}}
	for n, line := range strings.Split(text, "\n") {
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			s.types[name] = typ
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		smp, err := opsParseSample(line)
		if err != nil {
			return s, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		s.samples = append(s.samples, smp)
		s.byKey[smp.key()] = smp.value
	}
	return s, nil
}

func opsParseSample(line string) (opsSample, error) {
	smp := opsSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return smp, fmt.Errorf("no value")
	}
	smp.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			if line == "" {
				return smp, fmt.Errorf("unterminated labels")
			}
			if line[0] == '}' {
				line = line[1:]
				break
			}
			if line[0] == ',' {
				line = line[1:]
				continue
			}
			eq := strings.Index(line, `="`)
			if eq < 0 {
				return smp, fmt.Errorf("bad label")
			}
			name := line[:eq]
			line = line[eq+2:]
			var v strings.Builder
			for {
				if line == "" {
					return smp, fmt.Errorf("unterminated label value")
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' && line != "" {
					switch line[0] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(line[0])
					}
					line = line[1:]
					continue
				}
				v.WriteByte(c)
			}
			smp.labels[name] = v.String()
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return smp, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return smp, err
	}
	smp.value = v
	return smp, nil
}

// opsFamily is the family a sample belongs to (histogram samples carry a
// suffix).
func (s opsScrape) family(sample string) string {
	if _, ok := s.types[sample]; ok {
		return sample
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(sample, suffix); ok {
			if _, ok := s.types[f]; ok {
				return f
			}
		}
	}
	return sample
}

// Families of the Go, process and promhttp collectors: standard names an
// operator's dashboards already know, not Cloudoreg's to rename.
func opsStandard(family string) bool {
	for _, p := range []string{"go_", "process_", "promhttp_"} {
		if strings.HasPrefix(family, p) {
			return true
		}
	}
	return false
}

// opsCheckConventions applies the README's metric rules ("Observe") to one
// scrape: prefix cloudoreg_<program>_ (but the shared cloudoreg_build_info),
// counters end in _total, latencies are histograms and ages gauges in
// _seconds, no label names a tenant, source or ARN, and no label value is one
// of the run's identifiers. Partition labels must be Kafka partitions.
func opsCheckConventions(t *testing.T, program string, s opsScrape, forbidden map[string]string, kafkaPartitions int) {
	t.Helper()
	badLabel := map[string]bool{
		"org": true, "org_id": true, "orgid": true, "tenant": true, "account": true, "account_id": true, "account_number": true,
		"arn": true, "role_arn": true, "source": true, "source_id": true, "application_id": true, "authentication_id": true,
		"external_id": true, "identity": true,
	}
	// The registry every program starts from (ops.NewRegistry) holds the
	// metrics of the process, not of one program: cloudoreg_ without it.
	common := map[string]bool{}
	families, err := ops.NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		common[f.GetName()] = true
	}
	ours := 0
	for family, typ := range s.types {
		if opsStandard(family) {
			continue
		}
		ours++
		prefix := "cloudoreg_" + program + "_"
		if common[family] {
			prefix = "cloudoreg_"
		}
		if !strings.HasPrefix(family, prefix) {
			t.Errorf("%s: metric %s does not start with %s", program, family, prefix)
		}
		if (typ == "counter") != strings.HasSuffix(family, "_total") {
			t.Errorf("%s: %s is a %s: counters and only counters end in _total", program, family, typ)
		}
		seconds := strings.HasSuffix(family, "_seconds")
		if strings.Contains(family, "second") != seconds || (typ == "histogram") && !seconds || seconds && typ != "histogram" && typ != "gauge" {
			t.Errorf("%s: %s is a %s: latencies are histograms and ages gauges, both named *_seconds", program, family, typ)
		}
	}
	if ours < 5 {
		t.Errorf("%s: only %d Cloudoreg metric families exposed", program, ours)
	}
	for _, smp := range s.samples {
		family := s.family(smp.name)
		if opsStandard(family) {
			continue
		}
		for name, v := range smp.labels {
			if badLabel[strings.ToLower(name)] {
				t.Errorf("%s: %s has a label %q", program, smp.key(), name)
			}
			switch name {
			case "le":
				continue // bucket bounds
			case "partition":
				if n, err := strconv.Atoi(v); err != nil || n < 0 || n >= kafkaPartitions {
					t.Errorf("%s: %s: partition %q is not one of the %d Kafka partitions", program, smp.key(), v, kafkaPartitions)
				}
				continue
			}
			if what, ok := forbidden[v]; ok {
				t.Errorf("%s: %s carries the %s %q as a label value", program, smp.key(), what, v)
			}
			if strings.Contains(v, "arn:") {
				t.Errorf("%s: %s carries an ARN", program, smp.key())
			}
		}
	}
}

func opsAtLeast(n int) func(float64) bool { return func(v float64) bool { return v >= float64(n) } }
func opsExactly(n int) func(float64) bool { return func(v float64) bool { return v == float64(n) } }
func opsPositive(v float64) bool          { return v > 0 }

// opsExpect checks samples that must exist with values that satisfy a rule.
func opsExpect(t *testing.T, program string, s opsScrape, want map[string]func(float64) bool) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, ok := s.lookup(k)
		if !ok {
			t.Errorf("%s: %s is missing", program, k)
			continue
		}
		if !want[k](v) {
			t.Errorf("%s: %s = %v", program, k, v)
		}
	}
}

// opsAwait scrapes addr until cond holds (a ticker and a deadline).
func opsAwait(t *testing.T, addr, what string, cond func(opsScrape) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(opsScrapeMetrics(t, addr)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never: %s", what)
		case <-tick.C:
		}
	}
}
