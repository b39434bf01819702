package chaos

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/IBM/sarama"

	"github.com/cloudoreg/cloudoreg/shared/kafka"
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
		// Too large for the listener.
		{"oversized", h("Application.destroy"), []byte(big)},
		// Types Cloudoreg ignores: counted, no call.
		{"unknown type", h("Cloudoreg.chaos"), []byte(`{"id":99019}`)},
		{"ignored type", h("Endpoint.update"), []byte(`{"id":99020,"source_id":99020}`)},
	}
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
