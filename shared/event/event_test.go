package event

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"math/rand/v2"

	"regexp"

	"strconv"
)

// fixture is one example Kafka message of testdata/fixtures.
type fixture struct {
	Topic   string          `json:"topic"`
	Key     *string         `json:"key"`
	Headers [][2]string     `json:"headers"`
	Value   json.RawMessage `json:"value"`
}

func (f fixture) header(name string) string {
	for _, h := range f.Headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

func loadFixture(tb testing.TB, name string) fixture {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		tb.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return f
}

func allFixtures(tb testing.TB) map[string]fixture {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "fixtures", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(names) == 0 {
		tb.Fatal("no fixtures in testdata/fixtures")
	}
	out := map[string]fixture{}
	for _, n := range names {
		out[filepath.Base(n)] = loadFixture(tb, filepath.Base(n))
	}
	return out
}

func TestDecodeFixtures(t *testing.T) {
	cases := []struct {
		file string
		want Event
	}{
		{"event-applicationauthentication-create.json", Event{Type: AppAuthCreate, ApplicationID: "21", AuthenticationID: "41"}},
		{"event-applicationauthentication-destroy.json", Event{Type: AppAuthDestroy, ApplicationID: "21", AuthenticationID: "41"}},
		{"event-authentication-update.json", Event{Type: AuthUpdate, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		{"event-authentication-destroy.json", Event{Type: AuthDestroy, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		{"event-application-pause.json", Event{Type: AppPause, SourceID: "11", ApplicationID: "21"}},
		{"event-source-destroy.json", Event{Type: SourceDestroy, SourceID: "11"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			f := loadFixture(t, tc.file)
			et := f.header(HeaderEventType)
			if !Routed(et) {
				t.Fatalf("event type %q is not routed", et)
			}
			got, err := Decode(Type(et), f.Value)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if got.NeedsApplicationLookup() != (tc.want.SourceID == "") {
				t.Errorf("NeedsApplicationLookup() = %v", got.NeedsApplicationLookup())
			}
			tenant, err := ResolveTenant(f.header(HeaderOrgID), f.header(HeaderAccount), f.header(HeaderIdentity))
			if err != nil {
				t.Fatal(err)
			}
			if tenant != (Tenant{OrgID: "1234567"}) || tenant.Key() != *f.Key {
				t.Errorf("tenant %+v, key %q, message key %q", tenant, tenant.Key(), *f.Key)
			}
			// The identity alone gives the same tenant.
			if ti, err := ResolveTenant("", "", f.header(HeaderIdentity)); err != nil || ti != tenant {
				t.Errorf("identity-only tenant %+v, %v", ti, err)
			}
		})
	}
	ignored := loadFixture(t, "event-application-update-ignored.json")
	if et := ignored.header(HeaderEventType); Routed(et) {
		t.Errorf("%q must not be routed", et)
	}
}

// The same payload shapes under the types that share them.
func TestDecodeSharedShapes(t *testing.T) {
	app := loadFixture(t, "event-application-pause.json").Value
	for _, typ := range []Type{AppPause, AppUnpause, AppDestroy} {
		got, err := Decode(typ, app)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if want := (Event{Type: typ, SourceID: "11", ApplicationID: "21"}); got != want {
			t.Errorf("%s: got %+v, want %+v", typ, got, want)
		}
	}
}

func TestRoutedAndIsDestroy(t *testing.T) {
	routed := map[Type]bool{AppAuthCreate: false, AppAuthDestroy: true, AuthUpdate: false, AuthDestroy: false,
		AppPause: false, AppUnpause: false, AppDestroy: true, SourceDestroy: true}
	for typ, destroy := range routed {
		if !Routed(string(typ)) {
			t.Errorf("%s not routed", typ)
		}
		if typ.IsDestroy() != destroy {
			t.Errorf("%s.IsDestroy() = %v", typ, typ.IsDestroy())
		}
	}
	for _, s := range []string{"", "Application.update", "Source.create", "authentication.destroy", "Authentication.create",
		"ApplicationAuthentication.update", "applicationauthentication.create", " Source.destroy", "Source.destroy ", "healthcheck"} {
		if Routed(s) {
			t.Errorf("%q routed", s)
		}
		if Type(s).IsDestroy() {
			t.Errorf("%q IsDestroy", s)
		}
	}
}

// idField is one required id of one event type, in a payload that is valid
// apart from it.
type idField struct {
	typ   Type
	field string
	base  map[string]any
	get   func(Event) string
}

func idFields() []idField {
	appAuth := func() map[string]any {
		return map[string]any{"id": 31, "application_id": 21, "authentication_id": 41, "tenant": "", "paused_at": nil}
	}
	authUpdate := func() map[string]any {
		return map[string]any{"id": "41", "resource_type": "Application", "resource_id": 21, "source_id": 11, "tenant": ""}
	}
	application := func() map[string]any {
		return map[string]any{"id": 21, "source_id": 11, "application_type_id": 2, "tenant": ""}
	}
	source := func() map[string]any { return map[string]any{"id": 11, "name": "my-aws", "tenant": ""} }
	appID := func(e Event) string { return e.ApplicationID }
	authID := func(e Event) string { return e.AuthenticationID }
	srcID := func(e Event) string { return e.SourceID }
	var out []idField
	for _, typ := range []Type{AppAuthCreate, AppAuthDestroy} {
		out = append(out, idField{typ, "application_id", appAuth(), appID}, idField{typ, "authentication_id", appAuth(), authID})
	}
	for _, typ := range []Type{AuthUpdate, AuthDestroy} {
		out = append(out, idField{typ, "id", authUpdate(), authID}, idField{typ, "source_id", authUpdate(), srcID})
	}
	// A destroy is acted on only for the application it names.
	out = append(out, idField{AuthDestroy, "resource_id", authUpdate(), appID})
	for _, typ := range []Type{AppPause, AppUnpause, AppDestroy} {
		out = append(out, idField{typ, "id", application(), appID}, idField{typ, "source_id", application(), srcID})
	}
	return append(out, idField{SourceDestroy, "id", source(), srcID})
}

// payloadWith renders base with field set to the raw JSON (or removed when raw is "").
func payloadWith(tb testing.TB, base map[string]any, field, raw string) []byte {
	tb.Helper()
	m := map[string]json.RawMessage{}
	for k, v := range base {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		m[k] = b
	}
	if raw == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(raw)
	}
	// json.Marshal of RawMessage validates it; build the object by hand so
	// invalid JSON (leading zeros) reaches Decode as written.
	var sb strings.Builder
	sb.WriteByte('{')
	first := true
	for k, v := range m {
		if !first {
			sb.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		sb.Write(kb)
		sb.WriteByte(':')
		sb.Write(v)
	}
	sb.WriteByte('}')
	return []byte(sb.String())
}

func TestDecodeIDs(t *testing.T) {
	good := []struct{ raw, want string }{
		{`21`, "21"},
		{`"21"`, "21"},
		{`1`, "1"},
		{`"1"`, "1"},
		{` 42 `, "42"},
		{`"\u0034\u0032"`, "42"},
		{`9223372036854775807`, "9223372036854775807"},
		{`"9223372036854775807"`, "9223372036854775807"},
		{`1000000000000000000`, "1000000000000000000"},
	}
	bad := []struct {
		name, raw string
		wantErr   error
	}{
		{"missing", ``, ErrBadID},
		{"null", `null`, ErrBadID},
		{"negative", `-1`, ErrBadID},
		{"negative string", `"-1"`, ErrBadID},
		{"zero", `0`, ErrBadID},
		{"zero string", `"0"`, ErrBadID},
		{"negative zero", `-0`, ErrBadID},
		{"float", `21.5`, ErrBadID},
		{"integral float", `21.0`, ErrBadID},
		{"exponent", `2e1`, ErrBadID},
		{"float string", `"21.5"`, ErrBadID},
		{"beyond int64", `9223372036854775808`, ErrBadID},
		{"beyond int64 string", `"9999999999999999999"`, ErrBadID},
		{"20 digits fits uint64", `12345678901234567890`, ErrBadID},
		{"20 digits string", `"12345678901234567890"`, ErrBadID},
		{"huge", `123456789012345678901234567890`, ErrBadID},
		{"huge string", `"123456789012345678901234567890"`, ErrBadID},
		{"leading zeros string", `"0021"`, ErrBadID},
		{"leading zeros number", `0021`, ErrBadPayload}, // not JSON
		{"subject wildcard", `"1.>"`, ErrBadID},
		{"star", `"*"`, ErrBadID},
		{"gt", `">"`, ErrBadID},
		{"dotted", `"1.2"`, ErrBadID},
		{"empty string", `""`, ErrBadID},
		{"space string", `" "`, ErrBadID},
		{"padded string", `" 21"`, ErrBadID},
		{"trailing space string", `"21 "`, ErrBadID},
		{"newline string", `"21\n"`, ErrBadID},
		{"nul string", `"21\u0000"`, ErrBadID},
		{"full-width digit", `"２１"`, ErrBadID},
		{"letters", `"abc"`, ErrBadID},
		{"hex", `"0x15"`, ErrBadID},
		{"plus", `"+21"`, ErrBadID},
		{"object", `{"id":21}`, ErrBadID},
		{"empty object", `{}`, ErrBadID},
		{"array", `[21]`, ErrBadID},
		{"bool", `true`, ErrBadID},
		{"false", `false`, ErrBadID},
		{"invalid JSON", `21x`, ErrBadPayload},
	}
	for _, f := range idFields() {
		t.Run(string(f.typ)+"/"+f.field, func(t *testing.T) {
			for _, g := range good {
				ev, err := Decode(f.typ, payloadWith(t, f.base, f.field, g.raw))
				if err != nil {
					t.Errorf("%s: %v", g.raw, err)
					continue
				}
				if got := f.get(ev); got != g.want {
					t.Errorf("%s: got %q, want %q", g.raw, got, g.want)
				}
				if ev.Type != f.typ {
					t.Errorf("%s: type %q", g.raw, ev.Type)
				}
			}
			for _, b := range bad {
				ev, err := Decode(f.typ, payloadWith(t, f.base, f.field, b.raw))
				if !errors.Is(err, b.wantErr) {
					t.Errorf("%s (%s): err %v, want %v", b.name, b.raw, err, b.wantErr)
				}
				if ev != (Event{}) {
					t.Errorf("%s: event %+v returned with an error", b.name, ev)
				}
				if errors.Is(err, ErrBadID) && !strings.HasSuffix(err.Error(), ": "+f.field) {
					t.Errorf("%s: error %q does not name the field %s", b.name, err, f.field)
				}
			}
		})
	}
}

func TestDecodeAuthenticationUpdate(t *testing.T) {
	f := loadFixture(t, "event-authentication-update.json")
	// The fixture's id is a JSON string, as Sources sends it.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(f.Value, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["id"]) != `"41"` {
		t.Fatalf("fixture id is %s, want the string \"41\"", raw["id"])
	}
	cases := []struct {
		name, value string
		want        Event
	}{
		{"string id", `{"id":"41","resource_type":"Application","resource_id":21,"source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		{"number id", `{"id":41,"resource_type":"Application","resource_id":21,"source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		{"string resource id", `{"id":"41","resource_type":"Application","resource_id":"21","source_id":"11"}`,
			Event{Type: AuthUpdate, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}},
		// The application id is a hint: a bad one is dropped, not fatal.
		{"bad resource id", `{"id":"41","resource_type":"Application","resource_id":"1.>","source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", AuthenticationID: "41"}},
		{"null resource id", `{"id":"41","resource_type":"Application","resource_id":null,"source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", AuthenticationID: "41"}},
		{"no resource id", `{"id":"41","resource_type":"Application","source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", AuthenticationID: "41"}},
		// An authentication of a source or an endpoint names no application.
		{"source resource", `{"id":"41","resource_type":"Source","resource_id":11,"source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", AuthenticationID: "41"}},
		{"lower-case resource type", `{"id":"41","resource_type":"application","resource_id":21,"source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", AuthenticationID: "41"}},
		{"null resource type", `{"id":"41","resource_type":null,"resource_id":21,"source_id":11}`,
			Event{Type: AuthUpdate, SourceID: "11", AuthenticationID: "41"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(AuthUpdate, []byte(tc.value))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A destroy names the application whose credential is gone; the processor
// acts only when it is the cloud-meter one, so a destroy whose application
// cannot be read is poison, not a silent no-op.
func TestDecodeAuthenticationDestroy(t *testing.T) {
	cases := []struct {
		name, value string
		want        Event
		err         error
	}{
		{"as Sources sends it", `{"id":"41","resource_type":"Application","resource_id":21,"source_id":11}`,
			Event{Type: AuthDestroy, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}, nil},
		{"string ids", `{"id":"41","resource_type":"Application","resource_id":"21","source_id":"11"}`,
			Event{Type: AuthDestroy, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"}, nil},
		{"source credential", `{"id":"41","resource_type":"Source","resource_id":11,"source_id":11}`,
			Event{Type: AuthDestroy, SourceID: "11", AuthenticationID: "41"}, nil},
		{"endpoint credential", `{"id":"41","resource_type":"Endpoint","resource_id":"1.>","source_id":11}`,
			Event{Type: AuthDestroy, SourceID: "11", AuthenticationID: "41"}, nil},
		{"bad resource id", `{"id":"41","resource_type":"Application","resource_id":"1.>","source_id":11}`, Event{}, ErrBadID},
		{"null resource id", `{"id":"41","resource_type":"Application","resource_id":null,"source_id":11}`, Event{}, ErrBadID},
		{"no resource id", `{"id":"41","resource_type":"Application","source_id":11}`, Event{}, ErrBadID},
		{"no source id", `{"id":"41","resource_type":"Application","resource_id":21}`, Event{}, ErrBadID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(AuthDestroy, []byte(tc.value))
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeBadPayloads(t *testing.T) {
	values := map[string]string{
		"empty":                      ``,
		"blank":                      " \n\t ",
		"array":                      `[{"id":11}]`,
		"string":                     `"{\"id\":11}"`,
		"number":                     `11`,
		"null":                       `null`,
		"true":                       `true`,
		"truncated":                  `{"id":11`,
		"trailing data":              `{"id":11} {"id":12}`,
		"trailing garbage":           `{"id":11}x`,
		"not JSON":                   `id=11`,
		"single quotes":              `{'id':11}`,
		"resource_type not a string": `{"id":"41","resource_type":5,"resource_id":21,"source_id":11}`,
	}
	for name, v := range values {
		for _, typ := range []Type{AppAuthCreate, AppAuthDestroy, AuthUpdate, AuthDestroy, AppPause, AppUnpause, AppDestroy, SourceDestroy} {
			if name == "resource_type not a string" && typ != AuthUpdate && typ != AuthDestroy {
				continue
			}
			ev, err := Decode(typ, []byte(v))
			if !errors.Is(err, ErrBadPayload) {
				t.Errorf("%s as %s: err %v, want ErrBadPayload", name, typ, err)
			}
			if ev != (Event{}) {
				t.Errorf("%s as %s: event %+v", name, typ, ev)
			}
		}
	}
	// Whitespace around an object is fine.
	if ev, err := Decode(SourceDestroy, []byte(" \n{\"id\":11}\n ")); err != nil || ev.SourceID != "11" {
		t.Errorf("padded object: %+v, %v", ev, err)
	}
}

// Fields Cloudoreg does not read may hold anything.
func TestDecodeIgnoresOtherFields(t *testing.T) {
	v := `{"id":11,"name":{"nested":[1,2,{"x":null}]},"extra":[],"tenant":123,"version":null,"uid":"1.>"}`
	ev, err := Decode(SourceDestroy, []byte(v))
	if err != nil || ev != (Event{Type: SourceDestroy, SourceID: "11"}) {
		t.Fatalf("%+v, %v", ev, err)
	}
	// Deep nesting in an ignored field is not a crash.
	deep := `{"id":11,"extra":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`
	if _, err := Decode(SourceDestroy, []byte(deep)); err != nil {
		t.Errorf("deep nesting: %v", err)
	}
}

func TestDecodeUnroutedType(t *testing.T) {
	for _, typ := range []Type{"", "Application.update", "Source.create", "Authentication.create"} {
		ev, err := Decode(typ, []byte(`{"id":11,"source_id":11,"application_id":21,"authentication_id":41}`))
		if err == nil || ev != (Event{}) {
			t.Errorf("%q: %+v, %v", typ, ev, err)
		}
	}
}

// Errors are logged and counted: they name the field, never the value.
func TestDecodeErrorsNeverContainInput(t *testing.T) {
	const marker = "SECRET-MARKER-7f3a"
	values := []string{
		`{"id":"` + marker + `","source_id":"` + marker + `","application_id":"` + marker + `","authentication_id":"` + marker + `"}`,
		`{"id":11,"source_id":11,"application_id":"` + marker + `","authentication_id":"` + marker + `"}`,
		`{"id":"41","source_id":"` + marker + `"}`,
		`{"id":` + marker + `}`,
		`{"id":11,"resource_type":{"` + marker + `":1}}`,
		`{"id":11,"resource_type":"` + marker + `","resource_id":"` + marker + `","source_id":"x` + marker + `"}`,
		`[` + marker + `]`,
		`"` + marker + `"`,
		marker,
		`{"` + marker + `":` + marker + `}`,
		`{"id":11,"source_id":11,"application_id":21,"authentication_id":41,"x":"` + marker + `"` + marker,
	}
	failures := 0
	for _, v := range values {
		for _, typ := range []Type{AppAuthCreate, AppAuthDestroy, AuthUpdate, AuthDestroy, AppPause, AppUnpause, AppDestroy, SourceDestroy, Type(marker)} {
			_, err := Decode(typ, []byte(v))
			if err == nil {
				continue // a field this type does not read held the marker
			}
			failures++
			if strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), "SECRET") {
				t.Errorf("%s: error %q repeats the input", typ, err)
			}
		}
	}
	if failures < len(values)*5 {
		t.Errorf("only %d of %d decodes failed: the inputs do not exercise the errors", failures, len(values)*8)
	}
}

func TestValidID(t *testing.T) {
	for _, s := range []string{"1", "9", "10", "21", "1234567", "9223372036854775807"} {
		if !ValidID(s) {
			t.Errorf("ValidID(%q) = false", s)
		}
	}
	for _, s := range []string{"", "0", "00", "01", "-1", "+1", "1.5", "1.>", "*", ">", " 1", "1 ", "1\n", "\n1",
		"a", "1a", "１", "10000000000000000000", "12345678901234567890", "1\x00", "0x1",
		"9223372036854775808", "9999999999999999999"} { // beyond Sources' bigint ids
		if ValidID(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}

// TestValidIDIsTheDefinition: on any string, ValidID agrees with the
// definition it implements: 1 to 19 decimal digits, no leading zero, at
// most 2^63-1.
func TestValidIDIsTheDefinition(t *testing.T) {
	definition := regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	want := func(s string) bool {
		if !definition.MatchString(s) {
			return false
		}
		_, err := strconv.ParseInt(s, 10, 64)
		return err == nil
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const alphabet = "0123456789-+. a\x00\n１"
	for range 200_000 {
		b := make([]byte, rng.IntN(22))
		for i := range b {
			if rng.IntN(8) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = byte('0' + rng.IntN(10))
			}
		}
		if s := string(b); ValidID(s) != want(s) {
			t.Fatalf("ValidID(%q) = %v, the definition says %v", s, ValidID(s), want(s))
		}
	}
}

// decodeErrorTexts are every message Decode may return: fixed texts, so no
// input can leak into logs through them.
func decodeErrorTexts() map[string]bool {
	out := map[string]bool{ErrBadPayload.Error(): true, "event type is not routed": true}
	for _, f := range []string{"id", "source_id", "application_id", "authentication_id", "resource_id"} {
		out[ErrBadID.Error()+": "+f] = true
	}
	return out
}

func FuzzDecode(f *testing.F) {
	types := []Type{AppAuthCreate, AppAuthDestroy, AuthUpdate, AuthDestroy, AppPause, AppUnpause, AppDestroy, SourceDestroy}
	for _, fx := range allFixtures(f) {
		for _, typ := range types {
			f.Add(string(typ), []byte(fx.Value))
		}
		f.Add(fx.header(HeaderEventType), []byte(fx.Value))
	}
	poison := []string{
		``, ` `, `null`, `[]`, `[1]`, `"x"`, `11`, `true`, `{`, `{}`, `{"id":null}`,
		`{"id":-1,"source_id":-1,"application_id":-1,"authentication_id":-1}`,
		`{"id":0,"source_id":0,"application_id":0,"authentication_id":0}`,
		`{"id":1.5,"source_id":2e3,"application_id":21.0,"authentication_id":-0}`,
		`{"id":123456789012345678901234567890,"source_id":18446744073709551616,"application_id":12345678901234567890,"authentication_id":9223372036854775808}`,
		`{"id":"0021","source_id":"007","application_id":"01","authentication_id":"00"}`,
		`{"id":0021}`,
		`{"id":"1.>","source_id":"*","application_id":">","authentication_id":"1 2"}`,
		`{"id":"","source_id":"","application_id":"","authentication_id":""}`,
		`{"id":{"id":1},"source_id":[1],"application_id":{},"authentication_id":true}`,
		`{"id":"41","resource_type":"Application","resource_id":"1.>","source_id":11}`,
		`{"id":"41","resource_type":5,"resource_id":21,"source_id":11}`,
		`{"id":"\u0031","source_id":"\ud800","application_id":"１","authentication_id":"\u0000"}`,
		`{"id":11}{"id":12}`,
		"{\"id\":\"\xff\xfe\",\"source_id\":11}",
	}
	for _, p := range poison {
		for _, typ := range types {
			f.Add(string(typ), []byte(p))
		}
	}
	f.Add("", []byte(`{"id":11}`))
	f.Add("Application.update", []byte(`{"id":11,"source_id":11}`))

	texts := decodeErrorTexts()
	f.Fuzz(func(t *testing.T, typ string, value []byte) {
		ev, err := Decode(Type(typ), value)
		if err != nil {
			if ev != (Event{}) {
				t.Fatalf("event %+v returned with error %v", ev, err)
			}
			if !texts[err.Error()] {
				t.Fatalf("unexpected error text %q", err)
			}
			if Routed(typ) && !errors.Is(err, ErrBadPayload) && !errors.Is(err, ErrBadID) {
				t.Fatalf("routed type failed with an unclassified error %v", err)
			}
			return
		}
		if !Routed(typ) {
			t.Fatalf("unrouted type %q decoded", typ)
		}
		if ev.Type != Type(typ) {
			t.Fatalf("type %q, want %q", ev.Type, typ)
		}
		for name, id := range map[string]string{"source": ev.SourceID, "application": ev.ApplicationID, "authentication": ev.AuthenticationID} {
			if id != "" && !ValidID(id) {
				t.Fatalf("%s id %q is not valid", name, id)
			}
		}
		switch ev.Type {
		case AppAuthCreate, AppAuthDestroy:
			if ev.ApplicationID == "" || ev.AuthenticationID == "" || ev.SourceID != "" {
				t.Fatalf("%+v", ev)
			}
		case AuthUpdate, AuthDestroy:
			if ev.AuthenticationID == "" || ev.SourceID == "" {
				t.Fatalf("%+v", ev)
			}
		case AppPause, AppUnpause, AppDestroy:
			if ev.ApplicationID == "" || ev.SourceID == "" || ev.AuthenticationID != "" {
				t.Fatalf("%+v", ev)
			}
		case SourceDestroy:
			if ev.SourceID == "" || ev.ApplicationID != "" || ev.AuthenticationID != "" {
				t.Fatalf("%+v", ev)
			}
		}
		if ev.NeedsApplicationLookup() && ev.ApplicationID == "" {
			t.Fatalf("%+v needs a lookup but names no application", ev)
		}
	})
}
