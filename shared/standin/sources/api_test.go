package sources

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
)

func TestGetResourcesAndCollections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7100001")
	ids := e.bulkCloudMeter(h, "readable")

	src := e.getJSON(publicPrefix+"/sources/"+ids.sourceID, h)
	if src["id"] != ids.sourceID || src["name"] != "readable" || src["source_type_id"] != "7" || src["availability_status"] != "in_progress" {
		t.Fatalf("source %v", src)
	}
	app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h)
	for _, k := range []string{"id", "source_id", "application_type_id", "paused_at", "availability_status", "availability_status_error", "extra", "created_at", "updated_at"} {
		if _, ok := app[k]; !ok {
			t.Errorf("application has no %q: %v", k, app)
		}
	}
	if app["source_id"] != ids.sourceID || app["application_type_id"] != "5" || app["paused_at"] != nil {
		t.Fatalf("application %v", app)
	}
	auth := e.getJSON(publicPrefix+"/authentications/"+ids.authID, h)
	if auth["id"] != ids.authID || auth["resource_type"] != "Application" || auth["resource_id"] != ids.appID ||
		auth["username"] != "arn:aws:iam::123456789012:role/cloud-meter-role" || auth["extra"].(map[string]any)["external_id"] != "ext-readable" {
		t.Fatalf("authentication %v", auth)
	}

	collection := func(path string, wantIDs ...string) []any {
		t.Helper()
		c := e.getJSON(publicPrefix+path, h)
		meta, _ := c["meta"].(map[string]any)
		if meta["count"] != float64(len(wantIDs)) || meta["limit"] != float64(100) || meta["offset"] != float64(0) {
			t.Fatalf("%s meta %v", path, c["meta"])
		}
		if _, ok := c["links"].(map[string]any); !ok {
			t.Fatalf("%s has no links: %v", path, c)
		}
		data := c["data"].([]any)
		for i, id := range wantIDs {
			if id != "" && data[i].(map[string]any)["id"] != id {
				t.Fatalf("%s data[%d] = %v, want id %s", path, i, data[i], id)
			}
		}
		return data
	}
	collection("/sources", ids.sourceID)
	collection("/sources/"+ids.sourceID+"/applications", ids.appID)
	collection("/applications", ids.appID)
	collection("/applications/"+ids.appID+"/authentications", ids.authID)
	link := collection("/application_authentications?filter[authentication_id]="+ids.authID, "")[0].(map[string]any)
	if link["application_id"] != ids.appID || link["authentication_id"] != ids.authID {
		t.Fatalf("link %v", link)
	}
	types := collection("/application_types?filter[name]=/insights/platform/cloud-meter", "5")
	if types[0].(map[string]any)["name"] != "/insights/platform/cloud-meter" {
		t.Fatalf("application type %v", types)
	}
	collection("/application_types?filter[name]=cloud-meter")

	// Pagination.
	page := e.getJSON(publicPrefix+"/application_types?limit=2&offset=1", h)
	if len(page["data"].([]any)) != 2 || page["meta"].(map[string]any)["count"] != float64(len(applicationTypes)) {
		t.Fatalf("page %v", page)
	}
	e.mustDo(http.StatusBadRequest, http.MethodGet, publicPrefix+"/sources/abc", h, nil)
	e.mustDo(http.StatusNotFound, http.MethodGet, publicPrefix+"/sources/999999", h, nil)
}

func TestPasswordOnlyFromInternalAPIWithPSK(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7100002")
	out := decode(t, e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/bulk_create", h, map[string]any{
		"sources":      []any{map[string]any{"name": "s", "source_type_name": "amazon"}},
		"applications": []any{map[string]any{"source_name": "s", "application_type_name": "cloud-meter"}},
		"authentications": []any{map[string]any{"resource_type": "Application", "resource_name": "/insights/platform/cloud-meter",
			"authtype": "cloud-meter-arn", "username": "arn:aws:iam::123456789012:role/r", "password": "hunter2"}},
	}))
	authID := out["authentications"].([]any)[0].(map[string]any)["id"].(string)
	if strings.Contains(string(e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/authentications/"+authID, h, nil)), "hunter2") {
		t.Fatal("public read exposes the password")
	}
	if _, ok := out["authentications"].([]any)[0].(map[string]any)["password"]; ok {
		t.Fatal("bulk_create response exposes the password")
	}

	path := internalPrefix + "/authentications/" + authID + "?expose_encrypted_attribute[]=password"
	e.mustDo(http.StatusUnauthorized, http.MethodGet, path, h, nil)
	e.mustDo(http.StatusUnauthorized, http.MethodGet, path, withPSK(h, "wrong"), nil)
	e.mustDo(http.StatusUnauthorized, http.MethodGet, path, withPSK(http.Header{}, testPSK), nil)
	got := e.getJSON(path, withPSK(h, testPSK))
	if got["password"] != "hunter2" || got["authtype"] != "cloud-meter-arn" || got["resource_type"] != "Application" {
		t.Fatalf("internal read %v", got)
	}
	if noExpose := e.getJSON(internalPrefix+"/authentications/"+authID, withPSK(h, testPSK)); noExpose["password"] != nil {
		t.Fatalf("password without expose_encrypted_attribute: %v", noExpose)
	}
	// A wrong PSK on a write is refused like the real permission check does.
	e.mustDo(http.StatusUnauthorized, http.MethodPost, publicPrefix+"/sources", withPSK(h, "wrong"), map[string]any{"name": "x", "source_type_id": 7})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner, other := orgHeaders("7100003"), orgHeaders("7100004")
	ids := e.bulkCloudMeter(owner, "mine")
	e.nextEvents("7100003", 4)

	for _, path := range []string{"/sources/" + ids.sourceID, "/applications/" + ids.appID, "/authentications/" + ids.authID,
		"/sources/" + ids.sourceID + "/applications", "/applications/" + ids.appID + "/authentications"} {
		e.mustDo(http.StatusNotFound, http.MethodGet, publicPrefix+path, other, nil)
		e.mustDo(http.StatusUnauthorized, http.MethodGet, publicPrefix+path, http.Header{}, nil)
	}
	e.mustDo(http.StatusNotFound, http.MethodGet, internalPrefix+"/authentications/"+ids.authID, withPSK(other, testPSK), nil)
	for _, path := range []string{"/sources", "/applications", "/application_authentications"} {
		if c := e.getJSON(publicPrefix+path, other); len(c["data"].([]any)) != 0 {
			t.Fatalf("%s of another tenant: %v", path, c)
		}
	}
	e.mustDo(http.StatusNotFound, http.MethodDelete, publicPrefix+"/sources/"+ids.sourceID, other, nil)
	e.mustDo(http.StatusNotFound, http.MethodPatch, publicPrefix+"/authentications/"+ids.authID, other, map[string]any{"username": "x"})
	e.mustDo(http.StatusNotFound, http.MethodPost, publicPrefix+"/applications/"+ids.appID+"/pause", other, nil)

	// The same name is free in another tenant, and ids come from one sequence.
	o := e.bulkCloudMeter(other, "mine")
	if o.sourceID == ids.sourceID || o.appID == ids.appID {
		t.Fatalf("ids reused across tenants: %v %v", ids, o)
	}
	// The owner also reaches its data through the identity alone.
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/sources/"+ids.sourceID, identityHeaders("7100003", ""), nil)
	e.expectNoMoreEvents(owner, "7100003")
}

func TestCallsAreRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7100005")
	e.mustDo(http.StatusNotFound, http.MethodGet, publicPrefix+"/sources/424242", h, nil)
	e.mustDo(http.StatusUnauthorized, http.MethodGet, internalPrefix+"/authentications/1?x=1", withPSK(h, "bad"), nil)
	calls := e.srv.Calls()
	if len(calls) != 2 {
		t.Fatalf("calls %+v", calls)
	}
	c := calls[0]
	if c.Method != http.MethodGet || c.Path != publicPrefix+"/sources/424242" || c.OrgID != "7100005" || c.Status != http.StatusNotFound || c.Time.IsZero() {
		t.Fatalf("call %+v", c)
	}
	if calls[1].Status != http.StatusUnauthorized || calls[1].Query != "x=1" {
		t.Fatalf("call %+v", calls[1])
	}
	var viaHTTP []Call
	if err := json.Unmarshal(e.mustDo(http.StatusOK, http.MethodGet, CallsPath, nil, nil), &viaHTTP); err != nil || len(viaHTTP) != 2 {
		t.Fatalf("GET %s: %v %v", CallsPath, viaHTTP, err)
	}
}

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7100006")
	e.srv.Faults().Set(faults.Fault{Status: http.StatusServiceUnavailable, Count: 1})
	status, body := e.do(http.MethodGet, publicPrefix+"/sources", h, nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status %d", status)
	}
	var doc struct {
		Errors []struct{ Status, Detail string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || len(doc.Errors) != 1 || doc.Errors[0].Status != "503" || doc.Errors[0].Detail == "" {
		t.Fatalf("fault body %s", body)
	}
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/sources", h, nil)

	// Over HTTP too, and the test endpoints stay reachable while faulted.
	e.mustDo(http.StatusNoContent, http.MethodPost, faults.AdminPath, nil, map[string]any{"status": 500})
	e.mustDo(http.StatusInternalServerError, http.MethodGet, publicPrefix+"/sources", h, nil)
	e.mustDo(http.StatusOK, http.MethodGet, CallsPath, nil, nil)
	e.mustDo(http.StatusOK, http.MethodGet, StatusLogPath, nil, nil)
	e.mustDo(http.StatusNoContent, http.MethodDelete, faults.AdminPath, nil, nil)
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/sources", h, nil)

	statuses := []int{}
	for _, c := range e.srv.Calls() {
		statuses = append(statuses, c.Status)
	}
	want := []int{503, 200, 500, 200}
	if len(statuses) != len(want) {
		t.Fatalf("recorded %v, want %v", statuses, want)
	}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("recorded %v, want %v", statuses, want)
		}
	}
}

func TestAwaitReturnsContextErrorOnTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := e.srv.Await(ctx, func(s Snapshot) bool { return len(s.Sources) > 0 })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Await: %v", err)
	}
}

func TestAwaitWakesOnChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7100007")
	started := make(chan struct{})
	done := make(chan error, 1)
	ctx := awaitCtx(t)
	go func() {
		var once bool
		done <- e.srv.Await(ctx, func(s Snapshot) bool {
			if !once {
				once = true
				close(started)
			}
			for _, src := range s.Sources {
				if src.Name == "awaited" && src.OrgID == "7100007" {
					return true
				}
			}
			return false
		})
	}()
	<-started
	e.bulkCloudMeter(h, "awaited")
	if err := <-done; err != nil {
		t.Fatalf("Await: %v", err)
	}
}

func TestGeneratedIdentityMatchesRealService(t *testing.T) {
	t.Parallel()
	f := loadFixture(t, "event-applicationauthentication-create.json")
	for _, h := range f.Headers {
		if h[0] == event.HeaderIdentity {
			if got := generatedIdentity("1234567", ""); got != h[1] {
				t.Fatalf("generated %s, want %s", got, h[1])
			}
			return
		}
	}
	t.Fatal("fixture has no identity")
}

func TestNewNeedsBrokers(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without brokers succeeded")
	}
}

func TestWritesAfterCloseFailCleanly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	h := orgHeaders("7100008")
	e.mustDo(http.StatusInternalServerError, http.MethodPost, publicPrefix+"/sources", h, map[string]any{"name": "late", "source_type_id": 7})
	e.mustDo(http.StatusOK, http.MethodGet, publicPrefix+"/sources", h, nil)
	if err := e.srv.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// The link table is what tells whether a credential is attached: it filters
// on both ids, answers every id as a string and has the collection shape of
// the other lists.
func TestLinksFilterByApplicationAndAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7100006")
	a := e.bulkCloudMeter(h, "linked-a")
	b := e.bulkCloudMeter(h, "linked-b")
	other := e.bulkCloudMeter(orgHeaders("7100007"), "linked-elsewhere")

	list := func(query string) []map[string]any {
		t.Helper()
		c := e.getJSON(publicPrefix+"/application_authentications?"+query, h)
		meta, _ := c["meta"].(map[string]any)
		links, _ := c["links"].(map[string]any)
		data, _ := c["data"].([]any)
		if meta["limit"] != float64(100) || meta["offset"] != float64(0) || meta["count"] != float64(len(data)) || links["first"] == nil || links["last"] == nil {
			t.Fatalf("%s: not a collection: %v", query, c)
		}
		var out []map[string]any
		for _, d := range data {
			out = append(out, d.(map[string]any))
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []created
	}{
		{"", []created{a, b}},
		{"filter[application_id]=" + a.appID, []created{a}},
		{"filter[authentication_id]=" + b.authID, []created{b}},
		{"filter[application_id][eq]=" + b.appID, []created{b}},
		{"filter[application_id]=" + a.appID + "&filter[authentication_id]=" + a.authID, []created{a}},
		{"filter[application_id]=" + a.appID + "&filter[authentication_id]=" + b.authID, nil},
		{"filter[application_id]=" + other.appID, nil},
	} {
		got := list(tc.query)
		if len(got) != len(tc.want) {
			t.Fatalf("%q: %d links, want %d: %v", tc.query, len(got), len(tc.want), got)
		}
		for i, w := range tc.want {
			for _, k := range []string{"id", "application_id", "authentication_id", "created_at", "updated_at"} {
				if _, ok := got[i][k].(string); !ok {
					t.Errorf("%q: %s is not a string: %v", tc.query, k, got[i])
				}
			}
			if got[i]["application_id"] != w.appID || got[i]["authentication_id"] != w.authID {
				t.Errorf("%q: link %v, want application %s and authentication %s", tc.query, got[i], w.appID, w.authID)
			}
		}
	}
	e.mustDo(http.StatusBadRequest, http.MethodGet, publicPrefix+"/application_authentications?filter[no_such_field]=1", h, nil)

	// Another tenant's link is not found, and cannot be deleted.
	id := list("filter[application_id]=" + a.appID)[0]["id"].(string)
	e.mustDo(http.StatusNotFound, http.MethodGet, publicPrefix+"/application_authentications/"+id, orgHeaders("7100007"), nil)
	e.mustDo(http.StatusNotFound, http.MethodDelete, publicPrefix+"/application_authentications/"+id, orgHeaders("7100007"), nil)
	if len(list("filter[application_id]="+a.appID)) != 1 {
		t.Fatal("another tenant removed the link")
	}
}
