package app_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// sourceOrg spreads sources over orgs (Kafka keys, so partitions); all
// events of one source share its org, as in Sources.
func sourceOrg(source int) string { return fmt.Sprintf("org%d", source%7) }

// pause is an event that carries its source id, so routing needs no call.
func pause(source, n int) string {
	return fmt.Sprintf(`{"id":%d,"source_id":%d,"application_type_id":5,"n":%d}`, 5000+source, source+1, n)
}

// TestOrderKeptOverThousands forwards thousands of events of many sources
// over three partitions and checks each reached the stream exactly once and
// every source's events are in Kafka order.
func TestOrderKeptOverThousands(t *testing.T) {
	e := newEnv(t)
	const events, sources = 3000, 40
	r := rand.New(rand.NewPCG(1, 2))
	var want []string
	for i := 0; i < events; i++ {
		s := r.IntN(sources)
		want = append(want, e.produce(sourceOrg(s), "Application.pause", pause(s, i)))
	}
	l, stop := e.runListener(e.config())
	got := e.awaitStream(events)
	checkExactlyOnce(t, got, want)
	checkSourceOrder(t, got)
	if n := len(e.sources.callLog()); n != 0 {
		t.Errorf("routing by payload made %d Sources calls", n)
	}
	if p := metric(t, l.OpsAddr(), "cloudoreg_listener_published_total"); p != events {
		t.Errorf("published_total = %v, want %d", p, events)
	}
	stop()

	// A restart resumes after the committed offsets: nothing is forwarded again.
	_, stop = e.runListener(e.config())
	marker := e.produce(sourceOrg(0), "Application.pause", pause(0, events))
	got = e.awaitStream(events + 1)
	checkExactlyOnce(t, got, append(want, marker))
	stop()
}

// TestRoutingIndexResolvesDestroyAfterCreate: the create is resolved with one
// Sources call and indexed; the destroy, after the application is gone from
// Sources, is resolved from the index. An application never indexed and
// gone is skipped, and the stream goes on.
func TestRoutingIndexResolvesDestroyAfterCreate(t *testing.T) {
	e := newEnv(t)
	e.sources.set("21", "11")
	create := e.produce("o1", "ApplicationAuthentication.create", `{"id":31,"application_id":21,"authentication_id":41,"tenant":""}`)
	l, _ := e.runListener(e.config())
	e.awaitStream(1)
	e.sources.set("21", "") // deleted in Sources
	destroy := e.produce("o1", "ApplicationAuthentication.destroy", `{"id":31,"application_id":21,"authentication_id":41,"tenant":""}`)
	e.produce("o1", "ApplicationAuthentication.destroy", `{"id":32,"application_id":22,"authentication_id":42,"tenant":""}`)
	after := e.produce("o1", "Source.destroy", `{"id":12}`)
	got := e.awaitStream(3)
	checkExactlyOnce(t, got, []string{create, destroy, after})
	for i, wantSource := range []string{"11", "11", "12"} {
		if got[i].sourceID != wantSource || !strings.HasSuffix(got[i].subject, "."+wantSource) {
			t.Errorf("message %d: source %s subject %s, want source %s", i, got[i].sourceID, got[i].subject, wantSource)
		}
	}
	calls := e.sources.callLog()
	want := []string{"GET /api/sources/v3.1/applications/21", "GET /api/sources/v3.1/applications/22"}
	if strings.Join(calls, ",") != strings.Join(want, ",") {
		t.Errorf("Sources calls %v, want %v", calls, want)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_events_total{event_type="ApplicationAuthentication.destroy",outcome="skipped",reason="unresolvable"}`); n != 1 {
		t.Errorf("unresolvable destroys counted %v, want 1", n)
	}
}

// TestAuthenticationDestroyIsRouted: the real service's only event for a
// deleted credential carries the source id, so it is routed without a
// Sources call, with the application it belonged to and its own id for the
// processor to decide whether it was the cloud-meter credential.
func TestAuthenticationDestroyIsRouted(t *testing.T) {
	e := newEnv(t)
	destroy := e.produce("o1", "Authentication.destroy", `{"id":"41","authtype":"cloud-meter-arn","resource_type":"Application","resource_id":21,"source_id":11,"tenant":""}`)
	ofSource := e.produce("o1", "Authentication.destroy", `{"id":"42","authtype":"username_password","resource_type":"Source","resource_id":12,"source_id":12,"tenant":""}`)
	l, _ := e.runListener(e.config())
	got := e.awaitStream(2)
	checkExactlyOnce(t, got, []string{destroy, ofSource})
	want := []streamed{
		{subject: got[0].subject, sourceID: "11", origin: destroy, kind: "Authentication.destroy", appID: "21", authID: "41"},
		{subject: got[1].subject, sourceID: "12", origin: ofSource, kind: "Authentication.destroy", appID: "", authID: "42"},
	}
	for i := range want {
		want[i].seq = got[i].seq
		if got[i] != want[i] || !strings.HasSuffix(got[i].subject, "."+want[i].sourceID) {
			t.Errorf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if calls := e.sources.callLog(); len(calls) != 0 {
		t.Errorf("Sources calls %v, want none", calls)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_events_total{event_type="Authentication.destroy",outcome="routed",reason=""}`); n != 2 {
		t.Errorf("routed destroys counted %v, want 2", n)
	}
}

// TestSourcesOutageStallsAndRecovers: a 5xx while resolving is retried, the
// event is not skipped, and nothing after it overtakes it.
func TestSourcesOutageStallsAndRecovers(t *testing.T) {
	e := newEnv(t)
	e.sources.set("21", "11")
	e.sources.failNext(5)
	create := e.produce("o1", "ApplicationAuthentication.create", `{"id":31,"application_id":21,"authentication_id":41}`)
	next := e.produce("o1", "Application.pause", `{"id":21,"source_id":11}`)
	l, _ := e.runListener(e.config())
	got := e.awaitStream(2)
	checkExactlyOnce(t, got, []string{create, next})
	checkSourceOrder(t, got)
	if got[0].origin != create {
		t.Errorf("the retried create was overtaken: stream order %v", got)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_retries_total{target="resolve"}`); n < 5 {
		t.Errorf("resolve retries = %v, want at least 5", n)
	}
}

// TestSourcesRefusalIsSkipped: an answer of Sources that asking again
// cannot change (400, 431, any 4xx but 401/403/404, an undecodable body)
// makes the event poison: counted, skipped, and the partition goes on.
// 401 is retried (a wrong PSK an operator fixes), and 429 like a 5xx.
func TestSourcesRefusalIsSkipped(t *testing.T) {
	e := newEnv(t)
	var want []string
	refused := map[string]int{"21": 400, "22": 431, "23": 422, "24": 200}
	for app, code := range refused {
		if code != 200 {
			e.sources.answer(app, code)
		}
		e.produce("o1", "ApplicationAuthentication.create", `{"id":31,"application_id":`+app+`,"authentication_id":41}`)
		want = append(want, e.produce("o1", "Source.destroy", `{"id":1`+app+`}`))
	}
	e.sources.set("24", "not an id at all, but a JSON string")
	l, _ := e.runListener(e.config())
	got := e.awaitStream(len(want))
	checkExactlyOnce(t, got, want)
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="skipped",reason="refused_by_sources"}`); n != 3 {
		t.Errorf("skipped as refused_by_sources %v times, want 3", n)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_retries_total{target="resolve"}`); n != 0 {
		t.Errorf("refusals were retried %v times", n)
	}
}

// TestIgnoredEventsMakeNoCalls: types Cloudoreg does not act on are counted
// and cause no HTTP call and no work message.
func TestIgnoredEventsMakeNoCalls(t *testing.T) {
	e := newEnv(t)
	for _, typ := range []string{"Source.create", "Application.create", "Application.update", "Authentication.create", "Endpoint.destroy", "Endpoint.create", "Records.update", "Something.new"} {
		e.produce("o1", typ, `{"id":21,"application_id":21,"source_id":11}`)
	}
	e.sources.set("21", "11")
	marker := e.produce("o1", "ApplicationAuthentication.create", `{"id":31,"application_id":21,"authentication_id":41}`)
	l, _ := e.runListener(e.config())
	got := e.awaitStream(1)
	checkExactlyOnce(t, got, []string{marker})
	if calls := e.sources.callLog(); len(calls) != 1 {
		t.Errorf("Sources calls %v, want only the marker's", calls)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_events_total{event_type="other",outcome="ignored",reason=""}`); n != 1 {
		t.Errorf("unknown types counted as other: %v, want 1", n)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_events_total{event_type="Records.update",outcome="ignored",reason=""}`); n != 1 {
		t.Errorf("Records.update ignored %v times, want 1", n)
	}
}

// TestPoisonIsSkipped feeds one message of each poison class, each followed
// by a valid event that must still be delivered.
func TestPoisonIsSkipped(t *testing.T) {
	e := newEnv(t)
	header := func(k, v string) sarama.RecordHeader { return sarama.RecordHeader{Key: []byte(k), Value: []byte(v)} }
	org := header("x-rh-sources-org-id", "o1")
	typ := func(t string) sarama.RecordHeader { return header("event_type", t) }
	cases := []struct {
		name, reason string
		headers      []sarama.RecordHeader
		value        []byte
	}{
		{"not json", "bad_payload", []sarama.RecordHeader{org, typ("Source.destroy")}, []byte("{not json")},
		{"null value", "bad_payload", []sarama.RecordHeader{org, typ("Source.destroy")}, nil},
		{"json array", "bad_payload", []sarama.RecordHeader{org, typ("Source.destroy")}, []byte(`[1,2]`)},
		{"wrong field type", "bad_id", []sarama.RecordHeader{org, typ("Source.destroy")}, []byte(`{"id":{"nested":1}}`)},
		{"negative id", "bad_id", []sarama.RecordHeader{org, typ("Application.pause")}, []byte(`{"id":1,"source_id":-4}`)},
		{"id not a subject token", "bad_id", []sarama.RecordHeader{org, typ("Source.destroy")}, []byte(`{"id":"12.*"}`)},
		{"missing id", "bad_id", []sarama.RecordHeader{org, typ("ApplicationAuthentication.create")}, []byte(`{"application_id":21}`)},
		{"huge value", "too_large", []sarama.RecordHeader{org, typ("Source.destroy")}, []byte(`{"id":1,"pad":"` + strings.Repeat("x", 4096) + `"}`)},
		{"no tenant", "no_tenant", []sarama.RecordHeader{typ("Source.destroy")}, []byte(`{"id":1}`)},
		{"empty tenant headers", "no_tenant", []sarama.RecordHeader{header("x-rh-sources-org-id", ""), header("x-rh-sources-account-number", ""), typ("Source.destroy")}, []byte(`{"id":1}`)},
		{"undecodable identity", "bad_identity", []sarama.RecordHeader{header("x-rh-identity", "!!!"), typ("Source.destroy")}, []byte(`{"id":1}`)},
		{"identity without org", "no_tenant", []sarama.RecordHeader{header("x-rh-identity", "eyJpZGVudGl0eSI6e319"), typ("Source.destroy")}, []byte(`{"id":1}`)},
	}
	var valid []string
	for i, c := range cases {
		e.send(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("o1"), Value: sarama.ByteEncoder(c.value), Headers: c.headers})
		valid = append(valid, e.produce("o1", "Source.destroy", fmt.Sprintf(`{"id":%d}`, 100+i)))
	}
	c := e.config()
	c.MaxEventBytes = 1024
	l, _ := e.runListener(c)
	got := e.awaitStream(len(valid))
	checkExactlyOnce(t, got, valid)
	counts := map[string]float64{}
	for _, c := range cases {
		counts[c.reason]++
	}
	for reason, want := range counts {
		var n float64
		for _, typ := range []string{"Source.destroy", "Application.pause", "ApplicationAuthentication.create"} {
			n += metric(t, l.OpsAddr(), fmt.Sprintf(`cloudoreg_listener_events_total{event_type=%q,outcome="skipped",reason=%q}`, typ, reason))
		}
		if n != want {
			t.Errorf("skipped for %s: %v, want %v", reason, n, want)
		}
	}
}

// TestNATSOutage stops NATS while events arrive: the listener stalls, says
// so on /readyz, and once NATS is back forwards everything exactly once.
func TestNATSOutage(t *testing.T) {
	e := newEnv(t)
	l, _ := e.runListener(e.config())
	var want []string
	for i := 0; i < 50; i++ {
		want = append(want, e.produce(sourceOrg(i), "Application.pause", pause(i%10, i)))
	}
	e.awaitStream(50)
	e.stopNATS()
	for i := 50; i < 150; i++ {
		want = append(want, e.produce(sourceOrg(i), "Application.pause", pause(i%10, i)))
	}
	awaitHTTP(t, "http://"+l.OpsAddr()+"/readyz", 503)
	awaitHTTP(t, "http://"+l.OpsAddr()+"/healthz", 200)
	e.startNATS()
	got := e.awaitStream(150)
	checkExactlyOnce(t, got, want)
	checkSourceOrder(t, got)
	awaitHTTP(t, "http://"+l.OpsAddr()+"/readyz", 200)
}

// TestRebalanceKeepsExactlyOnce: a second listener joins (dynamic
// membership) and takes partitions over while events flow, then the first
// leaves mid-stream and the second takes everything; across both
// rebalances every event is forwarded exactly once, in per-source order.
func TestRebalanceKeepsExactlyOnce(t *testing.T) {
	e := newEnv(t)
	const half = 1500
	r := rand.New(rand.NewPCG(13, 17))
	var want []string
	produce := func(n int) {
		for i := 0; i < n; i++ {
			s := r.IntN(30)
			want = append(want, e.produce(sourceOrg(s), "Application.pause", pause(s, len(want))))
		}
	}
	dynamic := e.config()
	dynamic.InstanceID = ""
	produce(half)
	first, stopFirst := e.runListener(dynamic)
	e.awaitStream(half)
	second, _ := e.runListener(dynamic)
	awaitHTTP(t, "http://"+second.OpsAddr()+"/readyz", 200)
	produce(half)
	e.awaitStream(half + half/3)
	one := metric(t, first.OpsAddr(), "cloudoreg_listener_published_total")
	two := metric(t, second.OpsAddr(), "cloudoreg_listener_published_total")
	if two == 0 || one < half {
		t.Errorf("published: first %v, second %v: the partitions were not shared after the join", one, two)
	}
	stopFirst()
	got := e.awaitStream(2 * half)
	checkExactlyOnce(t, got, want)
	checkSourceOrder(t, got)
}
