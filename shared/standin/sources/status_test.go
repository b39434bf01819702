package sources

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// statusHeaders are the headers Cloudoreg writes: tenant, identity, type.
func statusHeaders(org string) [][2]string {
	return [][2]string{
		{event.HeaderOrgID, org},
		{event.HeaderIdentity, identityHeaders(org, "").Get(event.HeaderIdentity)},
		{event.HeaderEventType, status.EventType},
	}
}

func TestStatusMessageUpdatesApplicationAndSource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7200001")
	ids := e.bulkCloudMeter(h, "watched")
	e.nextEvents("7200001", 4)

	e.produceStatus("7200001", statusHeaders("7200001"), status.AvailableMessage(ids.appID))
	err := e.srv.Await(awaitCtx(t), func(s Snapshot) bool {
		return s.Applications[ids.appID].AvailabilityStatus == status.Available
	})
	if err != nil {
		t.Fatalf("Await available: %v", err)
	}
	app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h)
	src := e.getJSON(publicPrefix+"/sources/"+ids.sourceID, h)
	if app["availability_status"] != "available" || app["availability_status_error"] != "" || app["last_checked_at"] == nil || app["last_available_at"] == nil {
		t.Fatalf("application after available: %v", app)
	}
	if src["availability_status"] != "available" || src["last_available_at"] == nil {
		t.Fatalf("source after available: %v", src)
	}
	// The real listener raises Application.update after applying a status.
	m := e.nextEvents("7200001", 1)[0]
	if header(m, event.HeaderEventType) != evAppUpdate || payload(t, m)["availability_status"] != "available" {
		t.Fatalf("after status: %s %s", header(m, event.HeaderEventType), m.Value)
	}

	msg := status.UnavailableMessage(ids.appID, status.CG3002)
	e.produceStatus("7200001", statusHeaders("7200001"), msg)
	err = e.srv.Await(awaitCtx(t), func(s Snapshot) bool {
		a, src := s.Applications[ids.appID], s.Sources[ids.sourceID]
		return a.AvailabilityStatus == status.Unavailable && a.AvailabilityStatusError == msg.Error && src.AvailabilityStatus == status.Unavailable
	})
	if err != nil {
		t.Fatalf("Await unavailable: %v", err)
	}
	if app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h); app["availability_status_error"] != msg.Error {
		t.Fatalf("application after unavailable: %v", app)
	}

	log := e.srv.StatusLog()
	if len(log) != 2 {
		t.Fatalf("status log %+v", log)
	}
	for _, r := range log {
		if r.Outcome != OutcomeApplied || r.Header(event.HeaderOrgID) != "7200001" || r.Header(event.HeaderEventType) != status.EventType || !r.HasIdentity() {
			t.Fatalf("record %+v", r)
		}
		if strings.Contains(r.Header(event.HeaderIdentity), "eyJ") {
			t.Fatalf("identity recorded: %+v", r)
		}
	}
	var got status.Message
	if err := json.Unmarshal(log[1].Value, &got); err != nil || got != msg {
		t.Fatalf("recorded value %s: %v", log[1].Value, err)
	}
}

func TestStatusMessagesThatAreIgnoredOrRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := orgHeaders("7200002")
	ids := e.bulkCloudMeter(h, "guarded")
	e.bulkCloudMeter(orgHeaders("7200003"), "neighbour")

	e.produceStatus("", [][2]string{{event.HeaderEventType, status.Healthcheck}}, nil)
	e.produceStatus("9999999", statusHeaders("9999999"), status.AvailableMessage(ids.appID))
	e.produceStatus("7200003", statusHeaders("7200003"), status.AvailableMessage(ids.appID))
	lower := status.AvailableMessage(ids.appID)
	lower.ResourceType = "application"
	e.produceStatus("7200002", statusHeaders("7200002"), lower)
	e.produceStatus("7200002", [][2]string{{event.HeaderEventType, "something_else"}, {event.HeaderOrgID, "7200002"}}, status.AvailableMessage(ids.appID))
	e.produceStatus("7200002", [][2]string{{event.HeaderEventType, status.EventType}}, status.AvailableMessage(ids.appID))

	if err := e.srv.Await(awaitCtx(t), func(s Snapshot) bool { return len(s.StatusLog) == 6 }); err != nil {
		t.Fatalf("Await: %v", err)
	}
	want := map[string]int{
		OutcomeHealthcheck: 1, OutcomeUnknownTenant: 1, OutcomeNotFound: 1,
		OutcomeUnsupportedResource: 1, OutcomeWrongEventType: 1, OutcomeNoTenant: 1,
	}
	// A message is counted just after its record joins the log.
	testkit.Await(t, 10*time.Second, "the six messages counted", func() bool {
		counts := e.srv.StatusCounts()
		for k, v := range want {
			if counts[k] < v {
				return false
			}
		}
		return true
	})
	counts := e.srv.StatusCounts()
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("count %s = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
	if app := e.getJSON(publicPrefix+"/applications/"+ids.appID, h); app["availability_status"] != "in_progress" {
		t.Fatalf("a rejected message changed the application: %v", app)
	}
	var viaHTTP []StatusRecord
	if err := json.Unmarshal(e.mustDo(http.StatusOK, http.MethodGet, StatusLogPath, nil, nil), &viaHTTP); err != nil || len(viaHTTP) != 6 {
		t.Fatalf("GET %s: %d records, %v", StatusLogPath, len(viaHTTP), err)
	}
	e.nextEvents("7200002", 4)
	e.expectNoMoreEvents(h, "7200002")
}

func TestCheckAvailabilityCallsTheApplication(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, contentType, org, account, identity string
		hasAccount                                  bool
		body                                        map[string]string
	}
	got := make(chan seen, 10)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]string
		_ = json.Unmarshal(raw, &body)
		_, hasAccount := r.Header[http.CanonicalHeaderKey(event.HeaderAccount)]
		got <- seen{r.Method, r.Header.Get("Content-Type"), r.Header.Get(event.HeaderOrgID), r.Header.Get(event.HeaderAccount),
			r.Header.Get(event.HeaderIdentity), hasAccount, body}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer app.Close()

	e := newEnv(t, withAvailabilityURL(app.URL+"/internal/api/cloudigrade/v1/availability_status"))
	h := identityHeaders("7200004", "")
	out := decode(t, e.mustDo(http.StatusCreated, http.MethodPost, publicPrefix+"/bulk_create", h, map[string]any{
		"sources": []any{map[string]any{"name": "two-apps", "source_type_name": "amazon"}},
		"applications": []any{
			map[string]any{"source_name": "two-apps", "application_type_name": "cost-management"},
			map[string]any{"source_name": "two-apps", "application_type_name": "cloud-meter"},
		},
	}))
	sourceID := out["sources"].([]any)[0].(map[string]any)["id"].(string)

	e.mustDo(http.StatusAccepted, http.MethodPost, publicPrefix+"/sources/"+sourceID+"/check_availability", h, nil)
	e.mustDo(http.StatusNotFound, http.MethodPost, publicPrefix+"/sources/999999/check_availability", h, nil)
	r := <-got
	if r.method != http.MethodPost || r.body["source_id"] != sourceID || r.org != "7200004" || !r.hasAccount || r.account != "" ||
		r.identity != h.Get(event.HeaderIdentity) || !strings.HasPrefix(r.contentType, "application/json") {
		t.Fatalf("availability request %+v", r)
	}
	// Close waits for the background requests: only cloud-meter has a URL.
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("%d extra availability requests", len(got))
	}
	mustContainAll(t, e.logs.String(), "availability check requested")
}

func TestPSKNeverLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := withPSK(orgHeaders("7200005"), testPSK)
	ids := e.bulkCloudMeter(h, "secretive")
	e.getJSON(internalPrefix+"/authentications/"+ids.authID+"?expose_encrypted_attribute[]=password", h)
	e.do(http.MethodGet, internalPrefix+"/authentications/"+ids.authID, withPSK(h, testPSK+"x"), nil)
	e.do(http.MethodPost, publicPrefix+"/sources", withPSK(h, testPSK+"y"), map[string]any{"name": "n", "source_type_id": 7})
	e.produceStatus("7200005", append(statusHeaders("7200005"), [2]string{event.HeaderPSK, testPSK}), status.AvailableMessage(ids.appID))
	if err := e.srv.Await(awaitCtx(t), func(s Snapshot) bool { return len(s.StatusLog) == 1 }); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	logs := e.logs.String()
	mustContainAll(t, logs, "bulk create", "status message")
	if strings.Contains(logs, testPSK) {
		t.Fatalf("the PSK is in the logs:\n%s", logs)
	}
	if calls, _ := json.Marshal(e.srv.Calls()); strings.Contains(string(calls), testPSK) {
		t.Fatal("the PSK is in the call log")
	}
}

// Beside a real Sources the status topic carries tenants the stand-in never
// saw: they are counted and recorded, never logged as warnings. A message it
// rejects for another reason still is, which shows the check can fail.
func TestStatusOfUnknownTenantsIsNoWarning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ids := e.bulkCloudMeter(orgHeaders("7200010"), "known")

	e.produceStatus("9999901", statusHeaders("9999901"), status.AvailableMessage("1"))
	e.produceStatus("", [][2]string{{event.HeaderEventType, status.EventType}, {event.HeaderAccount, "acct-unknown"}}, status.AvailableMessage("2"))
	e.produceStatus("", [][2]string{{event.HeaderEventType, status.EventType}, {event.HeaderIdentity, identityHeaders("9999902", "").Get(event.HeaderIdentity)}}, status.AvailableMessage("3"))
	lower := status.AvailableMessage(ids.appID)
	lower.ResourceType = "application"
	e.produceStatus("7200010", statusHeaders("7200010"), lower)

	if err := e.srv.Await(awaitCtx(t), func(s Snapshot) bool { return len(s.StatusLog) == 4 }); err != nil {
		t.Fatalf("Await: %v", err)
	}
	if n := e.srv.StatusCounts()[OutcomeUnknownTenant]; n != 3 {
		t.Fatalf("%d messages counted as of unknown tenants, want 3", n)
	}
	// A message is recorded before its log line is written: wait for the lines.
	count := func() (unknown, rejected int, warned []string) {
		for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			warns := entry["level"] == "warning" || entry["level"] == "error"
			switch entry["outcome"] {
			case OutcomeUnknownTenant:
				unknown++
				if warns {
					warned = append(warned, line)
				}
			case OutcomeUnsupportedResource:
				if warns {
					rejected++
				}
			}
		}
		return unknown, rejected, warned
	}
	testkit.Await(t, 10*time.Second, "the log lines of the four messages", func() bool {
		unknown, rejected, _ := count()
		return unknown >= 3 && rejected >= 1
	})
	unknown, rejected, warned := count()
	for _, line := range warned {
		t.Errorf("unknown tenant logged as a warning: %s", line)
	}
	if unknown != 3 || rejected != 1 {
		t.Fatalf("log lines: %d for unknown tenants (want 3), %d warnings for the rejected message (want 1)", unknown, rejected)
	}
}
