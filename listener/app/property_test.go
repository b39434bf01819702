package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// headerCase is one generated Kafka message: any headers, any value.
type headerCase struct {
	headers []sarama.RecordHeader
	value   []byte
}

// names the generator picks header names from: the ones the listener
// reads, others, and odd ones.
var headerNames = []string{
	"event_type", "x-rh-sources-org-id", "x-rh-sources-account-number", "x-rh-identity",
	"encoding", "x-rh-insights-request-id", "", "Event_Type", "x-rh-identity\x00",
}

var routedTypes = []string{
	"ApplicationAuthentication.create", "ApplicationAuthentication.destroy", "Authentication.update",
	"Application.pause", "Application.unpause", "Application.destroy", "Source.destroy",
}

// size picks a length up to 2 MiB, most of them small or around the
// limits that matter (the 32 KiB identity bound, JetStream's 64 KiB
// headers, the 1 MiB payload).
func size(r *rand.Rand) int {
	switch r.IntN(6) {
	case 0:
		return r.IntN(64)
	case 1:
		return 32<<10 - 64 + r.IntN(128)
	case 2:
		return 64<<10 - 256 + r.IntN(8<<10)
	case 3:
		return 1<<20 - 1024 + r.IntN(2048)
	case 4:
		return r.IntN(2 << 20)
	default:
		return r.IntN(4096)
	}
}

// anyBytes is n bytes: printable, base64, digits, or anything at all.
func anyBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	alphabet := [][]byte{
		[]byte("0123456789"),
		[]byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
		[]byte(" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t\r\n\x00\x01\x7f"),
	}[r.IntN(3)]
	anything := r.IntN(4) == 0
	for i := range b {
		if anything {
			b[i] = byte(r.UintN(256))
		} else {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
	}
	return b
}

// identityOf is a well-formed identity padded to about n bytes.
func identityOf(org string, n int) []byte {
	raw := fmt.Sprintf(`{"identity":{"org_id":%q,"type":"User","pad":%q}}`, org, strings.Repeat("x", max(0, n*3/4-60)))
	return []byte(base64.StdEncoding.EncodeToString([]byte(raw)))
}

// genCase builds a message most of whose headers are plausible, so that
// generated messages reach every stage of the listener, not only the first
// check.
func genCase(r *rand.Rand, n int) headerCase {
	var c headerCase
	add := func(k string, v []byte) { c.headers = append(c.headers, sarama.RecordHeader{Key: []byte(k), Value: v}) }
	if r.IntN(8) > 0 {
		add("event_type", []byte(routedTypes[r.IntN(len(routedTypes))]))
	}
	if r.IntN(3) > 0 {
		add("x-rh-sources-org-id", []byte("o1"))
	}
	for k := r.IntN(6); k > 0; k-- {
		name := headerNames[r.IntN(len(headerNames))]
		switch r.IntN(3) {
		case 0:
			add(name, identityOf("o1", size(r)))
		default:
			add(name, anyBytes(r, size(r)))
		}
	}
	if r.IntN(4) == 0 && len(c.headers) > 0 { // a duplicate, first or last
		h := c.headers[r.IntN(len(c.headers))]
		add(string(h.Key), anyBytes(r, size(r)))
	}
	r.Shuffle(len(c.headers), func(i, j int) { c.headers[i], c.headers[j] = c.headers[j], c.headers[i] })
	id := 700000 + n
	switch r.IntN(5) {
	case 0:
		c.value = anyBytes(r, size(r))
	case 1:
		c.value = fmt.Appendf(nil, `{"id":%d,"application_id":%d,"authentication_id":%d}`, id, 21+r.IntN(2), id)
	default:
		c.value = fmt.Appendf(nil, `{"id":%d,"source_id":%d,"resource_type":"Application","resource_id":%d}`, id, id, id)
	}
	return c
}

// seedCases are the classes found by hand: each stalled the partition or
// reached the stream before the fix.
func seedCases() []headerCase {
	h := func(kv ...string) []sarama.RecordHeader {
		var out []sarama.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, sarama.RecordHeader{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
		}
		return out
	}
	appAuth := []byte(`{"id":31,"application_id":21,"authentication_id":41}`)
	return []headerCase{
		{h("event_type", "Source.destroy", "x-rh-sources-org-id", "o1", "x-rh-identity", string(identityOf("o1", 70<<10))), []byte(`{"id":600001}`)},
		{h("event_type", "Source.destroy", "x-rh-sources-org-id", "o1", "x-rh-identity", string(identityOf("o1", 1<<20))), []byte(`{"id":600002}`)},
		{h("event_type", "ApplicationAuthentication.create", "x-rh-sources-org-id", "o1\n"), appAuth},
		{h("event_type", "ApplicationAuthentication.create", "x-rh-sources-org-id", "o1", "x-rh-sources-account-number", "\x01"), appAuth},
		{h("event_type", "ApplicationAuthentication.create", "x-rh-sources-org-id", strings.Repeat("9", 10<<10)), appAuth},
		{h("event_type", "Source.destroy", "x-rh-sources-org-id", "o1", "encoding", strings.Repeat("j", 2<<20-4096)), []byte(`{"id":600003}`)},
		{h("event_type", "Source.destroy", "x-rh-sources-org-id", "o1", "x-rh-sources-org-id", strings.Repeat("8", 1<<20)), []byte(`{"id":600004}`)},
		{h("event_type", "Source.destroy", "x-rh-identity", string(identityOf("o1", 40<<10))), []byte(`{"id":600005}`)},
	}
}

// TestAnyHeadersForwardOrSkip is the listener's property: for any headers
// (up to 2 MiB each, any bytes, duplicates) and any value, each message is
// either forwarded or skipped with a counted reason, nothing stalls, and the
// valid event after it in the same partition is forwarded. Seeded, so a
// failure replays.
func TestAnyHeadersForwardOrSkip(t *testing.T) {
	e := newEnv(t)
	e.sources.set("21", "11") // application 22 is gone from Sources
	r := rand.New(rand.NewPCG(2026, 11))
	cases := seedCases()
	for len(cases) < 60 {
		cases = append(cases, genCase(r, len(cases)))
	}
	var markers []string
	generated := map[string]bool{}
	for i, c := range cases {
		generated[e.send(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("o1"), Value: sarama.ByteEncoder(c.value), Headers: c.headers})] = true
		markers = append(markers, e.produce("o1", "Source.destroy", fmt.Sprintf(`{"id":%d}`, 100+i)))
	}
	l, _ := e.runListener(e.config())
	sent := float64(len(cases) + len(markers))
	counts := awaitEventsCounted(t, l.OpsAddr(), sent)

	stored := e.awaitStream(int(counts["routed"]))
	if n := e.streamCount(); float64(n) != counts["routed"] {
		t.Errorf("the stream holds %d messages, %v were counted routed", n, counts["routed"])
	}
	forwarded := map[string]bool{}
	for _, m := range stored {
		forwarded[m.origin] = true
		if !generated[m.origin] && !contains(markers, m.origin) {
			t.Errorf("unexpected message from %s", m.origin)
		}
	}
	for i, m := range markers {
		if !forwarded[m] {
			t.Errorf("the valid event after case %d (%s) was not forwarded", i, m)
		}
	}
	for k, n := range counts {
		if k != "routed" && k != "ignored" && !strings.HasPrefix(k, "skipped/") {
			t.Errorf("%v events counted under %q", n, k)
		}
	}
	t.Logf("outcomes of %d generated messages and %d valid ones: %v", len(cases), len(markers), counts)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var eventsLine = regexp.MustCompile(`^cloudoreg_listener_events_total\{event_type="[^"]*",outcome="([^"]*)",reason="([^"]*)"\} (\S+)$`)

// eventCounts reads cloudoreg_listener_events_total by outcome ("routed",
// "ignored", "skipped/<reason>").
func eventCounts(t testing.TB, addr string) (map[string]float64, float64) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out, total := map[string]float64{}, 0.0
	for _, line := range bytes.Split(body, []byte("\n")) {
		m := eventsLine.FindSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(string(m[3]), 64)
		key := string(m[1])
		if key == "skipped" {
			key += "/" + string(m[2])
		}
		out[key] += v
		total += v
	}
	return out, total
}

// awaitEventsCounted waits until the listener has counted n events (the
// counter has no event to wait on: it is scraped on a ticker, within a
// deadline).
func awaitEventsCounted(t testing.TB, addr string, n float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		counts, total := eventCounts(t, addr)
		if total >= n {
			if total > n {
				t.Errorf("%v events counted, %v sent", total, n)
			}
			return counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener counted %v of %v events (stalled?): %v", total, n, counts)
		}
	}
	return nil
}

// TestWorkMessageOverServerLimitIsSkipped: a NATS server with a small max
// payload cannot take a work message with a large (but valid) identity;
// the listener sees so before publishing, skips it, and goes on.
func TestWorkMessageOverServerLimitIsSkipped(t *testing.T) {
	e := newEnvWith(t, func(o *server.Options) { o.MaxPayload = 16 << 10 })
	big := e.send(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("o1"), Value: sarama.StringEncoder(`{"id":12}`),
		Headers: []sarama.RecordHeader{
			{Key: []byte("event_type"), Value: []byte("Source.destroy")},
			{Key: []byte("x-rh-sources-org-id"), Value: []byte("o1")},
			{Key: []byte("x-rh-identity"), Value: identityOf("o1", 24<<10)},
		}})
	next := e.produce("o1", "Source.destroy", `{"id":13}`)
	l, _ := e.runListener(e.config())
	got := e.awaitStream(1)
	checkExactlyOnce(t, got, []string{next})
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_events_total{event_type="Source.destroy",outcome="skipped",reason="exceeds_nats_limits"}`); n != 1 {
		t.Errorf("%s: skipped as exceeds_nats_limits %v times, want 1", big, n)
	}
}

// TestPublishRefusedForGoodIsSkipped: JetStream refuses a message for what
// it is (here the stream's max message size, err_code 10054; a header block
// over 64 KiB gets 10097 the same way): retrying cannot help, so the event
// is skipped and counted, and the partition goes on.
func TestPublishRefusedForGoodIsSkipped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s, err := e.js.Stream(ctx, work.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgSize = 4 << 10
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	e.send(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("o1"), Value: sarama.StringEncoder(`{"id":12}`),
		Headers: []sarama.RecordHeader{
			{Key: []byte("event_type"), Value: []byte("Source.destroy")},
			{Key: []byte("x-rh-sources-org-id"), Value: []byte("o1")},
			{Key: []byte("x-rh-identity"), Value: identityOf("o1", 8<<10)},
		}})
	next := e.produce("o1", "Source.destroy", `{"id":13}`)
	l, _ := e.runListener(e.config())
	got := e.awaitStream(1)
	checkExactlyOnce(t, got, []string{next})
	// The refusal and the next event's acknowledgement come back on their
	// own: the skip may be counted just after the next event is stored.
	skipped := `cloudoreg_listener_events_total{event_type="Source.destroy",outcome="skipped",reason="refused_by_nats"}`
	testkit.Await(t, waitLimit, "the refused event counted as skipped", func() bool { return metric(t, l.OpsAddr(), skipped) >= 1 })
	if n := metric(t, l.OpsAddr(), skipped); n != 1 {
		t.Errorf("skipped as refused_by_nats %v times, want 1", n)
	}
	if n := metric(t, l.OpsAddr(), `cloudoreg_listener_retries_total{target="nats"}`); n != 0 {
		t.Errorf("a refusal for good was retried %v times", n)
	}
}
