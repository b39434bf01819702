package chaos

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/IBM/sarama"

	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/logging"
)

// poisonMsg is one message of the poison corpus: what the listener must
// count and skip (or ignore) without a call, a publish, or a stall.
type poisonMsg struct {
	Label   string
	Headers [][2]string // in order; a pair with an empty value is sent empty
	Value   []byte      // nil: a tombstone
}

// poisonCorpus builds the corpus for org, with ids far from any real one.
// maxValue is the listener's LISTENER_MAX_EVENT_BYTES.
func poisonCorpus(org string, maxValue int) []poisonMsg {
	ident := func(raw string) string { return base64.StdEncoding.EncodeToString([]byte(raw)) }
	goodIdentity := ident(`{"identity":{"org_id":"` + org + `","account_number":"","type":"System","internal":{"org_id":"` + org + `"}},"entitlements":null}`)
	h := func(eventType string, extra ...[2]string) [][2]string {
		out := [][2]string{{"event_type", eventType}, {"x-rh-sources-org-id", org}, {"x-rh-identity", goodIdentity}, {"encoding", "json"}}
		return append(out, extra...)
	}
	noTenant := func(eventType, identity string) [][2]string {
		return [][2]string{{"event_type", eventType}, {"x-rh-identity", identity}, {"encoding", "json"}}
	}
	big := `{"id":990001,"source_id":990001,"pad":"` + strings.Repeat("x", maxValue) + `"}`
	return []poisonMsg{
		// Not JSON, or JSON of the wrong shape or types.
		{"not JSON", h("ApplicationAuthentication.create"), []byte(`{"id":99001,"application_id":`)},
		{"binary", h("Source.destroy"), []byte{0xff, 0xfe, 0x00, 0x01}},
		{"JSON array", h("Application.destroy"), []byte(`[1,2,3]`)},
		{"JSON string", h("Application.pause"), []byte(`"Application.pause"`)},
		{"null", h("Source.destroy"), []byte(`null`)},
		{"tombstone", h("Source.destroy"), nil},
		{"empty value", h("Application.unpause"), []byte{}},
		{"id is an object", h("Source.destroy"), []byte(`{"id":{"$gt":0}}`)},
		{"id is a bool", h("Application.destroy"), []byte(`{"id":true,"source_id":true}`)},
		{"id is a float", h("Application.pause"), []byte(`{"id":99002.5,"source_id":99002.5}`)},
		{"auth id is a list", h("Authentication.update"), []byte(`{"id":["99003"],"resource_type":"Application","resource_id":99003,"source_id":[99003]}`)},
		{"no ids", h("ApplicationAuthentication.destroy"), []byte(`{"tenant":"x"}`)},
		// Ids that are not subject tokens (or not ids at all).
		{"id wildcard >", h("Source.destroy"), []byte(`{"id":">"}`)},
		{"id wildcard *", h("Application.destroy"), []byte(`{"id":99004,"source_id":"*"}`)},
		{"id with a dot", h("Application.pause"), []byte(`{"id":99005,"source_id":"99005.>"}`)},
		{"id with a space", h("Source.destroy"), []byte(`{"id":"99 006"}`)},
		{"negative id", h("Source.destroy"), []byte(`{"id":-99007}`)},
		{"zero id", h("Application.unpause"), []byte(`{"id":99008,"source_id":0}`)},
		{"huge id", h("Source.destroy"), []byte(`{"id":999999999999999999999999999}`)},
		{"id beyond int64", h("Source.destroy"), []byte(`{"id":9223372036854775808}`)},
		{"string id beyond int64", h("Application.pause"), []byte(`{"id":99021,"source_id":"9999999999999999999"}`)},
		{"id with NUL", h("Source.destroy"), []byte(`{"id":"99009\u0000"}`)},
		{"id not a number", h("Authentication.update"), []byte(`{"id":"x","resource_type":"Application","resource_id":99010,"source_id":"abc"}`)},
		// Headers: empty, missing, duplicated, undecodable identities.
		{"empty event_type", [][2]string{{"event_type", ""}, {"x-rh-sources-org-id", org}}, []byte(`{"id":99011}`)},
		{"no headers", nil, []byte(`{"id":99012,"source_id":99012}`)},
		{"empty tenant headers", [][2]string{{"event_type", "Source.destroy"}, {"x-rh-sources-org-id", ""}, {"x-rh-sources-account-number", ""}, {"x-rh-identity", ""}}, []byte(`{"id":99013}`)},
		{"identity not base64", noTenant("Source.destroy", "%%%not base64%%%"), []byte(`{"id":99014}`)},
		{"identity not JSON", noTenant("Application.destroy", ident("not json at all")), []byte(`{"id":99015,"source_id":99015}`)},
		{"identity without org", noTenant("Source.destroy", ident(`{"identity":{"type":"User"}}`)), []byte(`{"id":99016}`)},
		{"identity of wrong types", noTenant("Source.destroy", ident(`{"identity":{"org_id":12345,"account_number":["x"]}}`)), []byte(`{"id":99017}`)},
		{"header not UTF-8", [][2]string{{"event_type", "Source.destroy"}, {"x-rh-sources-org-id", "\xff\xfe"}}, []byte(`{"id":99018}`)},
		// Too large for the listener: the value, the identity it would copy
		// onto every work and status message (JetStream refuses headers
		// over 64 KiB, and 1 MiB messages), a tenant header.
		{"oversized", h("Application.destroy"), []byte(big)},
		{"identity over the bound", withHeader(h("Source.destroy"), "x-rh-identity", ident(`{"identity":{"org_id":"`+org+`","pad":"`+strings.Repeat("x", 40<<10)+`"}}`)), []byte(`{"id":99022}`)},
		{"identity over JetStream's header limit", withHeader(h("ApplicationAuthentication.create"), "x-rh-identity", strings.Repeat("QUJD", 70<<10/4)), []byte(`{"id":99023,"application_id":99023,"authentication_id":99023}`)},
		{"identity of 200 KB, no tenant headers", noTenant("Source.destroy", ident(`{"identity":{"org_id":"`+org+`","pad":"`+strings.Repeat("y", 200<<10)+`"}}`)), []byte(`{"id":99024}`)},
		{"org header of 100 KB", withHeader(h("Source.destroy"), "x-rh-sources-org-id", strings.Repeat("1", 100<<10)), []byte(`{"id":99025}`)},
		// Tenant values Sources cannot hold: control characters (Go's HTTP
		// client refuses them, so the lookup could never succeed), spaces,
		// values too long, in the headers and inside the identity.
		{"org header with a newline", withHeader(h("ApplicationAuthentication.create"), "x-rh-sources-org-id", org+"\n"), []byte(`{"id":99026,"application_id":99026,"authentication_id":99026}`)},
		{"org header with NUL", withHeader(h("Application.pause"), "x-rh-sources-org-id", org+"\x00"), []byte(`{"id":99027,"source_id":99027}`)},
		{"account header with a control character", append(h("ApplicationAuthentication.destroy"), [2]string{"x-rh-sources-account-number", "\x01"}), []byte(`{"id":99028,"application_id":99028,"authentication_id":99028}`)},
		{"org header with DEL", withHeader(h("Source.destroy"), "x-rh-sources-org-id", org+"\x7f"), []byte(`{"id":99029}`)},
		{"org header with a space", withHeader(h("Source.destroy"), "x-rh-sources-org-id", org+" 1"), []byte(`{"id":99030}`)},
		{"org header of 65 digits", withHeader(h("Source.destroy"), "x-rh-sources-org-id", strings.Repeat("7", 65)), []byte(`{"id":99031}`)},
		{"identity org with CRLF", noTenant("ApplicationAuthentication.create", ident(`{"identity":{"org_id":"`+org+`\r\nx-rh-sources-psk: guess"}}`)), []byte(`{"id":99032,"application_id":99032,"authentication_id":99032}`)},
		{"identity with a control character", withHeader(h("Source.destroy"), "x-rh-identity", goodIdentity+"\x1b"), []byte(`{"id":99033}`)},
		// Wrong tenant: an org Sources does not know names an application;
		// Sources answers 404 and the listener has nothing to resolve.
		{"wrong tenant", withHeader(h("ApplicationAuthentication.create"), "x-rh-sources-org-id", "9"+org), []byte(`{"id":99034,"application_id":99034,"authentication_id":99034}`)},
		{"wrong tenant in the identity", noTenant("ApplicationAuthentication.destroy", ident(`{"identity":{"org_id":"8`+org+`","type":"User"}}`)), []byte(`{"id":99035,"application_id":99035,"authentication_id":99035}`)},
		// Types Cloudoreg ignores: counted, no call.
		{"unknown type", h("Cloudoreg.chaos"), []byte(`{"id":99019}`)},
		{"ignored type", h("Endpoint.update"), []byte(`{"id":99020,"source_id":99020}`)},
	}
}

// withHeader replaces the value of header k.
func withHeader(hs [][2]string, k, v string) [][2]string {
	for i := range hs {
		if hs[i][0] == k {
			hs[i][1] = v
		}
	}
	return hs
}

// skipCounter passes the programs' output through and counts the
// listener's skipped events by reason, from its log lines (they survive a
// listener restart, its metrics do not).
type skipCounter struct {
	w       io.Writer
	mu      sync.Mutex
	partial []byte
	reasons map[string]int
}

var skipLine = regexp.MustCompile(regexp.QuoteMeta(`"` + logging.FieldMessage + `":"event skipped: it cannot be processed"`))
var reasonField = regexp.MustCompile(`"reason":"([a-z_]+)"`)

func (c *skipCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		c.count(c.partial[:i])
		c.partial = c.partial[i+1:]
	}
	c.mu.Unlock()
	return c.w.Write(p)
}

func (c *skipCounter) count(line []byte) {
	if !skipLine.Match(line) {
		return
	}
	if m := reasonField.FindSubmatch(line); m != nil {
		if c.reasons == nil {
			c.reasons = map[string]int{}
		}
		c.reasons[string(m[1])]++
	}
}

// counts is a copy of the counts so far.
func (c *skipCounter) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.reasons))
	for k, v := range c.reasons {
		out[k] = v
	}
	return out
}

// formatSkipped is "skipped N (reason n, ...)", reasons sorted.
func formatSkipped(reasons map[string]int) string {
	keys := make([]string, 0, len(reasons))
	total := 0
	for k, n := range reasons {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, reasons[k])
	}
	if total == 0 {
		return "skipped 0"
	}
	return fmt.Sprintf("skipped %d (%s)", total, strings.Join(parts, ", "))
}

// producePoison writes the corpus to the event topic, keyed by org like
// Sources (so it lands between the org's valid events), and returns where
// each message landed as "topic/partition/offset".
func producePoison(brokers []string, topic, org string, corpus []poisonMsg) (map[string]string, error) {
	c := sarama.NewConfig()
	c.ClientID = "cloudoreg-chaos-poison"
	c.Version = kafka.Version
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.MaxMessageBytes = 4 << 20
	c.Producer.Retry.Max = 60
	c.Producer.Retry.Backoff = 250 * 1e6
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		return nil, fmt.Errorf("poison producer: %w", err)
	}
	defer p.Close()
	at := map[string]string{}
	for _, m := range corpus {
		pm := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(org)}
		if m.Value != nil {
			pm.Value = sarama.ByteEncoder(m.Value)
		}
		for _, kv := range m.Headers {
			pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(kv[0]), Value: []byte(kv[1])})
		}
		part, off, err := p.SendMessage(pm)
		if err != nil {
			return at, fmt.Errorf("poison %q: %w", m.Label, err)
		}
		at[fmt.Sprintf("%s/%d/%d", topic, part, off)] = m.Label
	}
	return at, nil
}
