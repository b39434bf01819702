package sources

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/IBM/sarama"
	"github.com/cloudoreg/cloudoreg/shared/event"
)

// fixturesDir holds the repository's copy of the team's example messages
// (shared/event/testdata/fixtures).
const fixturesDir = "../../event/testdata/fixtures"

type fixture struct {
	Topic   string          `json:"topic"`
	Key     *string         `json:"key"`
	Headers [][2]string     `json:"headers"`
	Value   json.RawMessage `json:"value"`
}

func loadFixture(t *testing.T, name string) fixture {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixturesDir, name))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	var f fixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return f
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case bool:
		return "bool"
	}
	return "?"
}

// assertShapedLike checks that an event has the fixture's fields with the
// same JSON kinds (a time may be null in one and a string in the other).
func assertShapedLike(t *testing.T, m *sarama.ConsumerMessage, fixtureName string) {
	t.Helper()
	f := loadFixture(t, fixtureName)
	var want map[string]any
	if err := json.Unmarshal(f.Value, &want); err != nil {
		t.Fatal(err)
	}
	got := payload(t, m)
	for k, wv := range want {
		gv, ok := got[k]
		if !ok {
			t.Errorf("%s: field %q missing from %s", fixtureName, k, m.Value)
			continue
		}
		wk, gk := jsonKind(wv), jsonKind(gv)
		if wk != gk && wk != "null" && gk != "null" {
			t.Errorf("%s: field %q is %s, fixture has %s", fixtureName, k, gk, wk)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: extra field %q", fixtureName, k)
		}
	}
}

func TestBulkCreateEmitsFourEventsInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := identityHeaders("7000001", "540155")
	ids := e.bulkCloudMeter(h, "my-aws")

	evs := e.nextEvents("7000001", 4)
	want := []string{evSourceCreate, evAppCreate, evAppAuthCreate, evAuthCreate}
	if got := eventTypes(evs); !slices.Equal(got, want) {
		t.Fatalf("event types %v, want %v", got, want)
	}
	for _, m := range evs {
		// The request had only an identity: the tenant headers come from it,
		// in the real order, and the identity is forwarded untouched.
		wantKeys := []string{event.HeaderAccount, event.HeaderOrgID, event.HeaderIdentity, event.HeaderEventType, event.HeaderEncoding}
		if got := headerKeys(m); !slices.Equal(got, wantKeys) {
			t.Errorf("headers %v, want %v", got, wantKeys)
		}
		if header(m, event.HeaderOrgID) != "7000001" || header(m, event.HeaderAccount) != "540155" ||
			header(m, event.HeaderIdentity) != h.Get(event.HeaderIdentity) || header(m, event.HeaderEncoding) != "json" {
			t.Errorf("header values of %s: %v", header(m, event.HeaderEventType), m.Headers)
		}
		if m.Topic != DefaultEventsTopic {
			t.Errorf("topic %s", m.Topic)
		}
	}

	src, app, link, auth := payload(t, evs[0]), payload(t, evs[1]), payload(t, evs[2]), payload(t, evs[3])
	num := func(v any) string {
		n, ok := v.(json.Number)
		if !ok {
			t.Fatalf("%v (%T) is not a JSON number", v, v)
		}
		return n.String()
	}
	if num(src["id"]) != ids.sourceID || src["name"] != "my-aws" || src["tenant"] != "540155" {
		t.Errorf("Source.create payload %v", src)
	}
	if num(app["id"]) != ids.appID || num(app["source_id"]) != ids.sourceID || num(app["application_type_id"]) != "5" {
		t.Errorf("Application.create payload %v", app)
	}
	if num(link["application_id"]) != ids.appID || num(link["authentication_id"]) != ids.authID || link["tenant"] != "540155" {
		t.Errorf("ApplicationAuthentication.create payload %v", link)
	}
	if auth["id"] != ids.authID || num(auth["resource_id"]) != ids.appID || num(auth["source_id"]) != ids.sourceID ||
		auth["resource_type"] != "Application" || auth["authtype"] != "cloud-meter-arn" {
		t.Errorf("Authentication.create payload %v", auth)
	}
	if _, leaked := auth["password"]; leaked {
		t.Errorf("Authentication.create carries a password: %v", auth)
	}
	assertShapedLike(t, evs[0], "event-source-destroy.json")
	assertShapedLike(t, evs[1], "event-application-pause.json")
	assertShapedLike(t, evs[2], "event-applicationauthentication-create.json")
	assertShapedLike(t, evs[3], "event-authentication-update.json")
}

func TestEventsFromPSKCallCarryGeneratedIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.bulkCloudMeter(withPSK(orgHeaders("1234567"), testPSK), "psk-source")
	m := e.nextEvents("1234567", 1)[0]
	if got := headerKeys(m); !slices.Equal(got, []string{event.HeaderOrgID, event.HeaderIdentity, event.HeaderEventType, event.HeaderEncoding}) {
		t.Fatalf("headers %v", got)
	}
	// Byte for byte the identity a real Sources service generates.
	f := loadFixture(t, "event-application-pause.json")
	for _, h := range f.Headers {
		if h[0] == event.HeaderIdentity && header(m, event.HeaderIdentity) != h[1] {
			t.Fatalf("identity %s, want %s", header(m, event.HeaderIdentity), h[1])
		}
	}
	if f.Key == nil || string(m.Key) != *f.Key {
		t.Fatalf("key %s", m.Key)
	}
}

func TestBulkCreateRejectsInvalidRequestsWithoutSideEffects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000002")
	e.bulkCloudMeter(h, "taken")
	e.nextEvents("7000002", 4)

	bad := []map[string]any{
		{"sources": []any{map[string]any{"name": "taken", "source_type_name": "amazon"}}},
		{"sources": []any{map[string]any{"name": "x", "source_type_name": "amazon"}},
			"applications": []any{map[string]any{"source_name": "x", "application_type_name": "no-such-app"}}},
		{"sources": []any{map[string]any{"name": "y", "source_type_name": "openshift"}},
			"applications": []any{map[string]any{"source_name": "y", "application_type_name": "cloud-meter"}}},
		{"sources": []any{map[string]any{"name": "z", "source_type_name": "amazon"}},
			"authentications": []any{map[string]any{"resource_type": "application", "resource_name": "cloud-meter", "authtype": "cloud-meter-arn"}}},
		{"sources": []any{}},
	}
	for i, body := range bad {
		if got, out := e.do(http.MethodPost, publicPrefix+"/bulk_create", h, body); got != http.StatusBadRequest {
			t.Errorf("case %d: status %d: %s", i, got, out)
		}
	}
	if n := len(e.srv.Snapshot().Sources); n != 1 {
		t.Fatalf("%d sources after rejected requests", n)
	}
	e.expectNoMoreEvents(h, "7000002")
}

func TestSingleResourceCreates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000003")
	types := e.getJSON(publicPrefix+"/application_types?filter[name]=/insights/platform/cloud-meter", h)
	typeID := types["data"].([]any)[0].(map[string]any)["id"].(string)

	src := decode(t, e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/sources", h,
		map[string]any{"name": "single", "source_type_id": "7"}))
	app := decode(t, e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/applications", h,
		map[string]any{"source_id": src["id"], "application_type_id": typeID}))
	auth := decode(t, e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/authentications", h,
		map[string]any{"resource_type": "Application", "resource_id": app["id"], "authtype": "cloud-meter-arn",
			"username": "arn:aws:iam::123456789012:role/r", "extra": map[string]any{"external_id": "e"}}))

	evs := e.nextEvents("7000003", 4)
	if got := eventTypes(evs); !slices.Equal(got, []string{evSourceCreate, evAppCreate, evAuthCreate, evAppAuthCreate}) {
		t.Fatalf("events %v", got)
	}
	link := payload(t, evs[3])
	if link["application_id"].(json.Number).String() != app["id"] || link["authentication_id"].(json.Number).String() != auth["id"] {
		t.Fatalf("link payload %v", link)
	}
	links := e.getJSON(publicPrefix+"/application_authentications?filter[authentication_id]="+auth["id"].(string), h)
	if links["meta"].(map[string]any)["count"].(float64) != 1 {
		t.Fatalf("links %v", links)
	}

	// The real client's second step finds the link already there.
	e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/application_authentications", h,
		map[string]any{"application_id": app["id"], "authentication_id": auth["id"]})
	e.expectNoMoreEvents(h, "7000003")

	// A second application of the same type on the source is refused.
	e.mustDo(http.StatusBadRequest, http.MethodPost, publicPrefix+"/applications", h,
		map[string]any{"source_id": src["id"], "application_type_id": typeID})
}

func TestPatchAuthenticationEmitsUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000004")
	ids := e.bulkCloudMeter(h, "patch-me")
	e.nextEvents("7000004", 4)

	newARN := "arn:aws:iam::210987654321:role/new"
	e.mustDo(http.StatusOK, http.MethodPatch, publicPrefix+"/authentications/"+ids.authID, h,
		map[string]any{"username": newARN, "password": "secret-2", "extra": map[string]any{"external_id": "ext-2"}})

	m := e.nextEvents("7000004", 1)[0]
	if header(m, event.HeaderEventType) != evAuthUpdate {
		t.Fatalf("event %s", header(m, event.HeaderEventType))
	}
	p := payload(t, m)
	if p["id"] != ids.authID || p["username"] != newARN || p["resource_id"].(json.Number).String() != ids.appID ||
		p["source_id"].(json.Number).String() != ids.sourceID || p["extra"].(map[string]any)["external_id"] != "ext-2" {
		t.Fatalf("Authentication.update payload %v", p)
	}
	assertShapedLike(t, m, "event-authentication-update.json")

	got := e.getJSON(internalPrefix+"/authentications/"+ids.authID+"?expose_encrypted_attribute[]=password", withPSK(h, testPSK))
	if got["password"] != "secret-2" || got["username"] != newARN {
		t.Fatalf("internal read after patch: %v", got)
	}
}

func TestPauseAndUnpause(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000005")
	ids := e.bulkCloudMeter(h, "pausable")
	e.nextEvents("7000005", 4)

	e.mustDo(http.StatusNoContent, http.MethodPost, publicPrefix+"/applications/"+ids.appID+"/pause", h, nil)
	if app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h); app["paused_at"] == nil {
		t.Fatalf("paused application has no paused_at: %v", app)
	}
	m := e.nextEvents("7000005", 1)[0]
	p := payload(t, m)
	if header(m, event.HeaderEventType) != evAppPause || p["id"].(json.Number).String() != ids.appID ||
		p["source_id"].(json.Number).String() != ids.sourceID || p["application_type_id"].(json.Number).String() != "5" || p["paused_at"] == nil {
		t.Fatalf("pause event %s %v", header(m, event.HeaderEventType), p)
	}
	assertShapedLike(t, m, "event-application-pause.json")

	e.mustDo(http.StatusNoContent, http.MethodPost, publicPrefix+"/applications/"+ids.appID+"/unpause", h, nil)
	if app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h); app["paused_at"] != nil {
		t.Fatalf("unpaused application still paused: %v", app)
	}
	m = e.nextEvents("7000005", 1)[0]
	if header(m, event.HeaderEventType) != evAppUnpause || payload(t, m)["paused_at"] != nil {
		t.Fatalf("unpause event %s %s", header(m, event.HeaderEventType), m.Value)
	}

	// Pausing the source pauses its applications too.
	e.mustDo(http.StatusNoContent, http.MethodPost, publicPrefix+"/sources/"+ids.sourceID+"/pause", h, nil)
	if got := eventTypes(e.nextEvents("7000005", 2)); !slices.Equal(got, []string{evSourcePause, evAppPause}) {
		t.Fatalf("source pause events %v", got)
	}
	if app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h); app["paused_at"] == nil {
		t.Fatalf("application of a paused source is not paused: %v", app)
	}
	e.expectNoMoreEvents(h, "7000005")
}

func TestDeleteSourceRemovesFirstThenEmitsDestroyEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000006")
	ids := e.bulkCloudMeter(h, "doomed")
	e.nextEvents("7000006", 4)

	e.mustDo(http.StatusNoContent, http.MethodDelete, publicPrefix+"/sources/"+ids.sourceID, h, nil)
	evs := e.nextEvents("7000006", 4)
	want := []string{evAppAuthDestroy, evAppDestroy, evSourceDestroy, evAuthDestroy}
	if got := eventTypes(evs); !slices.Equal(got, want) {
		t.Fatalf("destroy events %v, want %v", got, want)
	}
	// A consumer reacting to the first event already finds everything gone.
	for _, path := range []string{
		"/sources/" + ids.sourceID, "/applications/" + ids.appID, "/authentications/" + ids.authID,
		"/sources/" + ids.sourceID + "/applications", "/applications/" + ids.appID + "/authentications",
	} {
		e.mustDo(http.StatusNotFound, http.MethodGet, publicPrefix+path, h, nil)
	}
	e.mustDo(http.StatusNotFound, http.MethodGet, internalPrefix+"/authentications/"+ids.authID, withPSK(h, testPSK), nil)
	links := e.getJSON(publicPrefix+"/application_authentications?filter[authentication_id]="+ids.authID, h)
	if links["meta"].(map[string]any)["count"].(float64) != 0 {
		t.Fatalf("link survived: %v", links)
	}

	if p := payload(t, evs[2]); p["id"].(json.Number).String() != ids.sourceID {
		t.Errorf("Source.destroy payload %v", p)
	}
	if p := payload(t, evs[3]); p["id"] != ids.authID {
		t.Errorf("Authentication.destroy payload %v", p)
	}
	assertShapedLike(t, evs[0], "event-applicationauthentication-destroy.json")
	assertShapedLike(t, evs[2], "event-source-destroy.json")
	e.expectNoMoreEvents(h, "7000006")
}

func TestDeleteApplication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000007")
	a := e.bulkCloudMeter(h, "app-delete")
	e.nextEvents("7000007", 4)

	e.mustDo(http.StatusNoContent, http.MethodDelete, publicPrefix+"/applications/"+a.appID, h, nil)
	if got := eventTypes(e.nextEvents("7000007", 3)); !slices.Equal(got, []string{evAppAuthDestroy, evAppDestroy, evAuthDestroy}) {
		t.Fatalf("application delete events %v", got)
	}
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/sources/"+a.sourceID, h, nil)
	e.expectNoMoreEvents(h, "7000007")
}

// The real service raises only Authentication.destroy here: its link goes by
// the database's cascade, without an event of its own.
func TestDeleteAuthenticationEmitsOnlyAuthenticationDestroy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000008")
	b := e.bulkCloudMeter(h, "auth-delete")
	e.nextEvents("7000008", 4)

	e.mustDo(http.StatusNoContent, http.MethodDelete, publicPrefix+"/authentications/"+b.authID, h, nil)
	evs := e.nextEvents("7000008", 1)
	if got := eventTypes(evs); !slices.Equal(got, []string{evAuthDestroy}) {
		t.Fatalf("authentication delete events %v", got)
	}
	p := payload(t, evs[0])
	if p["id"] != b.authID || p["resource_type"] != resourceApplication {
		t.Errorf("Authentication.destroy id and resource_type: %s", evs[0].Value)
	}
	for field, want := range map[string]string{"resource_id": b.appID, "source_id": b.sourceID} {
		if n, ok := p[field].(json.Number); !ok || n.String() != want {
			t.Errorf("Authentication.destroy %s = %#v, want the number %s", field, p[field], want)
		}
	}
	assertShapedLike(t, evs[0], "event-authentication-update.json")

	links := e.getJSON(publicPrefix+"/application_authentications?filter[authentication_id]="+b.authID, h)
	if links["meta"].(map[string]any)["count"].(float64) != 0 {
		t.Fatalf("link survived: %v", links)
	}
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/applications/"+b.appID, h, nil)
	e.expectNoMoreEvents(h, "7000008")
}

// Deleting the link is not deleting the credential: the authentication keeps
// its resource, so the application's authentications still list it, and only
// the link table says it is detached.
func TestDeleteLinkLeavesTheAuthenticationListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7000009")
	c := e.bulkCloudMeter(h, "link-delete")
	e.nextEvents("7000009", 4)
	links := e.getJSON(publicPrefix+"/application_authentications?filter[application_id]="+c.appID, h)["data"].([]any)
	if len(links) != 1 {
		t.Fatalf("links of the application: %v", links)
	}
	linkID := links[0].(map[string]any)["id"].(string)
	e.getJSON(publicPrefix+"/application_authentications/"+linkID, h)

	e.mustDo(http.StatusNoContent, http.MethodDelete, publicPrefix+"/application_authentications/"+linkID, h, nil)
	evs := e.nextEvents("7000009", 1)
	if got := eventTypes(evs); !slices.Equal(got, []string{evAppAuthDestroy}) {
		t.Fatalf("link delete events %v", got)
	}
	p := payload(t, evs[0])
	for field, want := range map[string]string{"id": linkID, "application_id": c.appID, "authentication_id": c.authID} {
		if n, ok := p[field].(json.Number); !ok || n.String() != want {
			t.Errorf("ApplicationAuthentication.destroy %s = %#v, want the number %s", field, p[field], want)
		}
	}
	assertShapedLike(t, evs[0], "event-applicationauthentication-destroy.json")

	listed := e.getJSON(publicPrefix+"/applications/"+c.appID+"/authentications", h)["data"].([]any)
	if len(listed) != 1 || listed[0].(map[string]any)["id"] != c.authID {
		t.Fatalf("the application no longer lists its authentication: %v", listed)
	}
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/authentications/"+c.authID, h, nil)
	for _, filter := range []string{"filter[application_id]=" + c.appID, "filter[authentication_id]=" + c.authID} {
		if n := e.getJSON(publicPrefix+"/application_authentications?"+filter, h)["meta"].(map[string]any)["count"]; n != float64(0) {
			t.Errorf("%s still finds %v links", filter, n)
		}
	}
	e.mustDo(http.StatusNotFound, http.MethodGet, publicPrefix+"/application_authentications/"+linkID, h, nil)
	e.mustDo(http.StatusNotFound, http.MethodDelete, publicPrefix+"/application_authentications/"+linkID, h, nil)
	e.expectNoMoreEvents(h, "7000009")
}
