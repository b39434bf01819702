package route

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cloudoreg/cloudoreg/shared/event"
)

// Values of the team's example messages (shared/fixtures).
const (
	fixtureOrg      = "1234567"
	fixtureIdentity = "eyJpZGVudGl0eSI6eyJvcmdfaWQiOiIxMjM0NTY3IiwiYWNjb3VudF9udW1iZXIiOiIiLCJpbnRlcm5hbCI6eyJvcmdfaWQiOiIifSwidHlwZSI6IlN5c3RlbSJ9LCJlbnRpdGxlbWVudHMiOm51bGx9"

	appAuthValue     = `{"id":31,"created_at":"2026-11-22 03:37:38 UTC","updated_at":"2026-11-22 03:37:38 UTC","paused_at":null,"application_id":21,"authentication_id":41,"tenant":""}`
	authUpdateValue  = `{"id":"41","created_at":"0001-01-01T00:00:00Z","name":"","authtype":"cloud-meter-arn","username":"arn:aws:iam::123456789012:role/cloud-meter-role","extra":{"external_id":"5b1f7a52-3f0e-4c1e-9d0b-6d2c8a1e4f00"},"version":"","availability_status":null,"last_checked_at":null,"last_available_at":null,"availability_status_error":"","resource_type":"Application","resource_id":21,"source_id":11,"tenant":""}`
	applicationValue = `{"id":21,"created_at":"2026-11-22 03:37:38 UTC","updated_at":"2026-11-22 03:37:38 UTC","paused_at":"2026-11-22 03:37:38 UTC","availability_status":"available","availability_status_error":"","last_checked_at":"2026-11-22 03:37:38 UTC","last_available_at":"2026-11-22 03:37:38 UTC","extra":{},"superkey_data":null,"source_id":11,"application_type_id":2,"tenant":""}`
	sourceValue      = `{"id":11,"created_at":"2026-11-22 03:37:38 UTC","updated_at":"2026-11-22 03:37:38 UTC","paused_at":null,"name":"my-aws","uid":"8c4e0d2a-7b55-4d6f-a1c3-2f9e6b7d1a00","version":null,"imported":null,"source_ref":null,"app_creation_workflow":"manual_configuration","availability_status":"in_progress","last_checked_at":null,"last_available_at":null,"source_type_id":7,"tenant":""}`
)

const maxValue = 1 << 20

func headers(eventType string) Headers {
	return Headers{
		event.HeaderOrgID:     fixtureOrg,
		event.HeaderIdentity:  fixtureIdentity,
		event.HeaderEventType: eventType,
		event.HeaderEncoding:  "json",
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDecideRoutes(t *testing.T) {
	cases := []struct {
		typ   event.Type
		value string
		want  event.Event
	}{
		{event.AppAuthCreate, appAuthValue, event.Event{Type: event.AppAuthCreate, ApplicationID: "21", AuthenticationID: "41"}},
		{event.AppAuthDestroy, appAuthValue, event.Event{Type: event.AppAuthDestroy, ApplicationID: "21", AuthenticationID: "41"}},
		{event.AuthUpdate, authUpdateValue, event.Event{Type: event.AuthUpdate, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		// Sources sends a destroy with the same payload as the update.
		{event.AuthDestroy, authUpdateValue, event.Event{Type: event.AuthDestroy, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		{event.AppPause, applicationValue, event.Event{Type: event.AppPause, SourceID: "11", ApplicationID: "21"}},
		{event.AppUnpause, applicationValue, event.Event{Type: event.AppUnpause, SourceID: "11", ApplicationID: "21"}},
		{event.AppDestroy, applicationValue, event.Event{Type: event.AppDestroy, SourceID: "11", ApplicationID: "21"}},
		{event.SourceDestroy, sourceValue, event.Event{Type: event.SourceDestroy, SourceID: "11"}},
	}
	for _, tc := range cases {
		t.Run(string(tc.typ), func(t *testing.T) {
			d := Decide(headers(string(tc.typ)), []byte(tc.value), maxValue)
			want := Decision{Action: Route, EventType: string(tc.typ), Event: tc.want,
				Tenant: event.Tenant{OrgID: fixtureOrg}, Identity: fixtureIdentity}
			if d != want {
				t.Errorf("got %+v\nwant %+v", d, want)
			}
			if MetricType(d.EventType) != string(tc.typ) {
				t.Errorf("metric type %q", MetricType(d.EventType))
			}
		})
	}
}

func TestDecideTenantFromIdentity(t *testing.T) {
	h := headers(string(event.SourceDestroy))
	h[event.HeaderOrgID] = ""
	h[event.HeaderIdentity] = b64(`{"identity":{"account_number":"333","internal":{"org_id":"999"}}}`)
	d := Decide(h, []byte(sourceValue), maxValue)
	if d.Action != Route || d.Tenant != (event.Tenant{OrgID: "999", AccountNumber: "333"}) || d.Identity != h[event.HeaderIdentity] {
		t.Errorf("%+v", d)
	}
	// Headers win over the identity.
	h[event.HeaderAccount] = "444"
	d = Decide(h, []byte(sourceValue), maxValue)
	if d.Action != Route || d.Tenant != (event.Tenant{AccountNumber: "444"}) {
		t.Errorf("%+v", d)
	}
}

func TestDecideIgnores(t *testing.T) {
	for _, typ := range []string{"", "Application.update", "Application.create", "Source.create", "Source.update",
		"Authentication.create", "authentication.destroy", "ApplicationAuthentication.update", "Endpoint.create",
		"Records.update", "healthcheck", "availability_status", "source.destroy", "Source.destroy ", "\xff"} {
		// Even garbage in every other respect is ignored, not skipped.
		for _, h := range []Headers{headers(typ), {event.HeaderEventType: typ}} {
			for _, v := range []string{sourceValue, "", "not json", strings.Repeat("x", maxValue+1)} {
				d := Decide(h, []byte(v), maxValue)
				if d.Action != Ignore || d.Reason != "" || d.EventType != typ || d.Event != (event.Event{}) || d.Tenant != (event.Tenant{}) || d.Identity != "" {
					t.Errorf("%q / %.20q: %+v", typ, v, d)
				}
			}
		}
	}
	// Missing event_type header altogether.
	d := Decide(Headers{event.HeaderOrgID: fixtureOrg}, []byte(sourceValue), maxValue)
	if d.Action != Ignore || d.EventType != "" || MetricType(d.EventType) != "none" {
		t.Errorf("missing event_type: %+v", d)
	}
	if d := Decide(nil, nil, maxValue); d.Action != Ignore {
		t.Errorf("nil headers: %+v", d)
	}
}

func TestDecideSkips(t *testing.T) {
	typ := string(event.AuthUpdate)
	noTenant := headers(typ)
	delete(noTenant, event.HeaderOrgID)
	delete(noTenant, event.HeaderIdentity)
	emptyTenant := headers(typ)
	emptyTenant[event.HeaderOrgID] = ""
	emptyTenant[event.HeaderAccount] = ""
	emptyTenant[event.HeaderIdentity] = ""
	identityWithoutTenant := headers(typ)
	delete(identityWithoutTenant, event.HeaderOrgID)
	identityWithoutTenant[event.HeaderIdentity] = b64(`{"identity":{"type":"System","internal":{"org_id":""}}}`)
	badBase64 := headers(typ)
	delete(badBase64, event.HeaderOrgID)
	badBase64[event.HeaderIdentity] = "!!not base64!!"
	notJSON := headers(typ)
	delete(notJSON, event.HeaderOrgID)
	notJSON[event.HeaderIdentity] = b64("plain text")

	cases := []struct {
		name   string
		h      Headers
		value  string
		max    int
		reason string
	}{
		{"too large", headers(typ), authUpdateValue, len(authUpdateValue) - 1, ReasonTooLarge},
		{"too large wins over a bad tenant", noTenant, authUpdateValue, 10, ReasonTooLarge},
		{"too large wins over a bad payload", headers(typ), "not json at all", 3, ReasonTooLarge},
		{"no tenant", noTenant, authUpdateValue, maxValue, ReasonNoTenant},
		{"empty tenant headers and identity", emptyTenant, authUpdateValue, maxValue, ReasonNoTenant},
		{"identity without tenant", identityWithoutTenant, authUpdateValue, maxValue, ReasonNoTenant},
		{"bad base64 identity", badBase64, authUpdateValue, maxValue, ReasonBadIdentity},
		{"identity not JSON", notJSON, authUpdateValue, maxValue, ReasonBadIdentity},
		{"tenant checked before payload", noTenant, "not json", maxValue, ReasonNoTenant},
		{"bad payload", headers(typ), "not json", maxValue, ReasonBadPayload},
		{"null payload", headers(typ), "null", maxValue, ReasonBadPayload},
		{"empty payload", headers(typ), "", maxValue, ReasonBadPayload},
		{"array payload", headers(typ), `[` + authUpdateValue + `]`, maxValue, ReasonBadPayload},
		{"bad id", headers(typ), `{"id":"1.>","source_id":11}`, maxValue, ReasonBadID},
		{"missing source id", headers(typ), `{"id":"41"}`, maxValue, ReasonBadID},
		{"negative id", headers(string(event.SourceDestroy)), `{"id":-11}`, maxValue, ReasonBadID},
		{"huge id", headers(string(event.AppAuthCreate)), `{"application_id":123456789012345678901,"authentication_id":41}`, maxValue, ReasonBadID},
		{"control character in the org id", with(headers(typ), event.HeaderOrgID, "12\n34"), authUpdateValue, maxValue, ReasonBadTenant},
		{"org id too long", with(headers(typ), event.HeaderOrgID, strings.Repeat("1", event.MaxTenantValue+1)), authUpdateValue, maxValue, ReasonBadTenant},
		{"control character in the account", with(headers(typ), event.HeaderAccount, "\x01"), authUpdateValue, maxValue, ReasonBadTenant},
		{"identity too large", with(headers(typ), event.HeaderIdentity, strings.Repeat("A", 70<<10)), authUpdateValue, maxValue, ReasonIdentityTooLarge},
		{"control character in the identity", with(headers(typ), event.HeaderIdentity, fixtureIdentity+"\r\n"), authUpdateValue, maxValue, ReasonBadIdentity},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.h, []byte(tc.value), tc.max)
			if d.Action != Skip || d.Reason != tc.reason {
				t.Fatalf("got %v/%q, want Skip/%q", d.Action, d.Reason, tc.reason)
			}
			if d.EventType != tc.h[event.HeaderEventType] {
				t.Errorf("event type %q", d.EventType)
			}
			if d.Event != (event.Event{}) || d.Tenant != (event.Tenant{}) || d.Identity != "" {
				t.Errorf("a skip carries %+v", d)
			}
		})
	}
	// Exactly maxValue bytes is allowed.
	if d := Decide(headers(typ), []byte(authUpdateValue), len(authUpdateValue)); d.Action != Route {
		t.Errorf("value of exactly the limit: %+v", d)
	}
}

func with(h Headers, k, v string) Headers {
	h[k] = v
	return h
}

func pairsOf(kv ...[2][]byte) (int, func(int) ([]byte, []byte)) {
	return len(kv), func(i int) ([]byte, []byte) { return kv[i][0], kv[i][1] }
}

func p(k string, v []byte) [2][]byte { return [2][]byte{[]byte(k), v} }

func TestFromPairs(t *testing.T) {
	h := FromPairs(pairsOf(
		p("x-rh-sources-org-id", nil),
		p("x-rh-sources-org-id", []byte{}),
		p("x-rh-sources-org-id", []byte("\xff\xfe")),
		p("x-rh-sources-org-id", []byte("1234567")),
		p("x-rh-sources-org-id", []byte("7654321")),
		p("event_type", []byte("Source.destroy")),
		p("event_type", []byte("Application.update")),
		p("encoding", []byte("json")),
		p("x-rh-sources-account-number", []byte("")),
		p("x-rh-identity", []byte("a\xc3")),
		p("x-rh-identity", []byte("é✓")),
		p("unused", []byte("not read")),
		p("", []byte("empty name")),
	))
	want := Headers{
		"x-rh-sources-org-id": "1234567",
		"event_type":          "Source.destroy",
		"x-rh-identity":       "é✓",
	}
	if len(h) != len(want) {
		t.Errorf("got %d headers %q, want %q", len(h), h, want)
	}
	for k, v := range want {
		if got, ok := h[k]; !ok || got != v {
			t.Errorf("%q = %q (%v), want %q", k, got, ok, v)
		}
	}
	if _, ok := h["x-rh-sources-account-number"]; ok {
		t.Error("an empty value was kept")
	}
	for _, k := range []string{"encoding", "unused", ""} {
		if _, ok := h[k]; ok {
			t.Errorf("header %q, which nothing reads, was kept", k)
		}
	}
	if len(FromPairs(0, nil)) != 0 {
		t.Error("no pairs")
	}
	// The pair function's buffers may be reused: FromPairs copies.
	buf := []byte("1111111")
	h = FromPairs(1, func(int) ([]byte, []byte) { return []byte("x-rh-sources-org-id"), buf })
	copy(buf, "2222222")
	if h[event.HeaderOrgID] != "1111111" {
		t.Errorf("value aliases the caller's buffer: %q", h[event.HeaderOrgID])
	}
}

func TestMetricType(t *testing.T) {
	for typ := range knownTypes {
		if MetricType(typ) != typ {
			t.Errorf("%q -> %q", typ, MetricType(typ))
		}
	}
	for _, typ := range []event.Type{event.AppAuthCreate, event.AppAuthDestroy, event.AuthUpdate, event.AuthDestroy, event.AppPause, event.AppUnpause, event.AppDestroy, event.SourceDestroy} {
		if MetricType(string(typ)) != string(typ) {
			t.Errorf("routed %q -> %q", typ, MetricType(string(typ)))
		}
	}
	if MetricType("") != "none" {
		t.Error("empty")
	}
	for _, s := range []string{"x", "source.destroy", "Source.destroy ", strings.Repeat("A", 1000), "\xff", "none", "other", "healthcheck"} {
		if MetricType(s) != "other" {
			t.Errorf("%q -> %q", s, MetricType(s))
		}
	}
}

// labels is every value MetricType may return.
func labels() map[string]bool {
	out := map[string]bool{"none": true, "other": true}
	for k := range knownTypes {
		out[k] = true
	}
	return out
}

func FuzzDecide(f *testing.F) {
	values := []string{appAuthValue, authUpdateValue, applicationValue, sourceValue, "", "null", "[]", `"x"`, "1",
		`{"id":"1.>","source_id":"*"}`, `{"id":0,"source_id":-1}`, `{"id":1.5}`, `{"id":123456789012345678901234}`,
		`{"id":"0021","source_id":11}`, `{"application_id":{},"authentication_id":[]}`, `{"id":null,"source_id":null}`}
	types := []string{"", "Application.update", "healthcheck"}
	for _, t := range []event.Type{event.AppAuthCreate, event.AppAuthDestroy, event.AuthUpdate, event.AuthDestroy, event.AppPause, event.AppUnpause, event.AppDestroy, event.SourceDestroy} {
		types = append(types, string(t))
	}
	identities := []string{fixtureIdentity, "", "!!", b64("x"), b64(`{"identity":{"account_number":"1"}}`)}
	for i, v := range values {
		for j, typ := range types {
			id := identities[(i+j)%len(identities)]
			org := ""
			if (i+j)%3 == 0 {
				org = fixtureOrg
			}
			f.Add(typ, org, "", id, []byte(v), 1<<20)
		}
	}
	f.Add(string(event.SourceDestroy), fixtureOrg, "", fixtureIdentity, []byte(sourceValue), 3)
	f.Add(string(event.SourceDestroy), fixtureOrg, "", fixtureIdentity, []byte(sourceValue), -1)
	f.Add("\xff", "\xff", "\xff", "\xff", []byte("\xff"), 0)

	allowed := labels()
	f.Fuzz(func(t *testing.T, typ, org, account, identity string, value []byte, maxV int) {
		raw := [][2][]byte{
			p(event.HeaderEventType, []byte(typ)),
			p(event.HeaderOrgID, []byte(org)),
			p(event.HeaderAccount, []byte(account)),
			p(event.HeaderIdentity, []byte(identity)),
		}
		h := FromPairs(pairsOf(raw...))
		for k, v := range h {
			if v == "" || !utf8.ValidString(v) {
				t.Fatalf("FromPairs kept %q=%q", k, v)
			}
		}
		d := Decide(h, value, maxV)
		if !allowed[MetricType(d.EventType)] {
			t.Fatalf("unbounded metric label %q", MetricType(d.EventType))
		}
		switch d.Action {
		case Ignore:
			if event.Routed(d.EventType) || d.Reason != "" {
				t.Fatalf("ignored a routed type: %+v", d)
			}
		case Skip:
			switch d.Reason {
			case ReasonTooLarge, ReasonIdentityTooLarge, ReasonBadPayload, ReasonBadID, ReasonNoTenant, ReasonBadTenant, ReasonBadIdentity:
			default:
				t.Fatalf("unknown reason %q", d.Reason)
			}
			if !event.Routed(d.EventType) {
				t.Fatalf("skipped an unrouted type: %+v", d)
			}
		case Route:
			if !event.Routed(d.EventType) || d.Event.Type != event.Type(d.EventType) {
				t.Fatalf("routed %+v", d)
			}
			if d.Event.SourceID == "" && d.Event.ApplicationID == "" {
				t.Fatalf("route without a source or application id: %+v", d)
			}
			for _, id := range []string{d.Event.SourceID, d.Event.ApplicationID, d.Event.AuthenticationID} {
				if id != "" && !event.ValidID(id) {
					t.Fatalf("invalid id %q routed", id)
				}
			}
			if d.Tenant.Key() == "" {
				t.Fatalf("route without a tenant: %+v", d)
			}
			if len(value) > maxV {
				t.Fatalf("oversized value routed")
			}
			if d.Identity != h[event.HeaderIdentity] {
				t.Fatal("identity not carried")
			}
			if len(d.Identity) > event.MaxIdentityBytes || !event.ValidTenantValue(d.Tenant.OrgID) || !event.ValidTenantValue(d.Tenant.AccountNumber) {
				t.Fatalf("unbounded or invalid header value routed: %d-byte identity, tenant %q", len(d.Identity), d.Tenant)
			}
		default:
			t.Fatalf("action %v", d.Action)
		}
	})
}
