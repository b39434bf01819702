package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi/apitest"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

const (
	adminToken = "apitest-admin-token"
	orgA       = "1234567"
	orgB       = "7654321"
	v1         = "/api/cloudoreg/v1"
)

// Callers of the API.
var (
	asAdmin = map[string]string{"Authorization": "Bearer " + adminToken}
	asOrgA  = map[string]string{"x-rh-identity": apitest.Identity(orgA)}
	asOrgB  = map[string]string{"x-rh-identity": apitest.Identity(orgB)}
)

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// TestStatusAPITenantScoping: an org reads its own sources (recorded
// outcome or only a parked retry) and nothing else; another org's source
// answers exactly like a source that does not exist; operators read all.
func TestStatusAPITenantScoping(t *testing.T) {
	e := apitest.Start(t, adminToken)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.PutOutcome("101", outcomes.Record{OrgID: orgA, State: "unavailable", Code: "CG3002", ApplicationID: "201", Attempts: 1, LastEvent: "ApplicationAuthentication.create", Origin: "t/0/1", Time: at})
	e.PutOutcome("103", outcomes.Record{State: "available", LastEvent: "Source.create", Time: at}) // recorded before records kept the org
	e.Park("102", orgA, 4, at.Add(time.Minute), at)
	e.RHSM.Register(orgA, rhsm.Account{ID: "123456789012", SourceID: "101", Verified: true})
	e.RHSM.Register(orgA, rhsm.Account{ID: "210987654321", SourceID: "999"})

	_, unknown := e.Do(http.MethodGet, v1+"/sources/424242", asOrgA)
	for _, c := range []struct {
		name   string
		who    map[string]string
		source string
		want   int
	}{
		{"own source", asOrgA, "101", 200},
		{"own parked source", asOrgA, "102", 200},
		{"another org's source", asOrgB, "101", 404},
		{"another org's parked source", asOrgB, "102", 404},
		{"a source of no known org", asOrgA, "103", 404},
		{"admin, any org", asAdmin, "101", 200},
		{"admin, no known org", asAdmin, "103", 200},
		{"no credentials", nil, "101", 401},
		{"a wrong bearer token", map[string]string{"Authorization": "Bearer nope"}, "101", 401},
		{"not a bearer token", map[string]string{"Authorization": "Basic " + adminToken}, "101", 401},
		{"an undecodable identity", map[string]string{"x-rh-identity": "%%%"}, "101", 401},
		{"an identity without org", map[string]string{"x-rh-identity": "eyJpZGVudGl0eSI6e319"}, "101", 401},
		{"not a source id", asOrgA, "abc", 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.Do(http.MethodGet, v1+"/sources/"+c.source, c.who)
			if code != c.want {
				t.Fatalf("HTTP %d, want %d: %s", code, c.want, body)
			}
			if code == 404 && string(body) != string(unknown) {
				t.Errorf("404 body %s differs from an unknown source's %s: it tells them apart", body, unknown)
			}
		})
	}

	s := decode[statusapiSource](t, mustGet(t, e, "/sources/101", asOrgA))
	if s.OrgID != orgA || s.Outcome == nil || s.Outcome.Code != "CG3002" || !strings.Contains(s.Outcome.CustomerText, "Error code CG3002") ||
		s.Outcome.EventType != "ApplicationAuthentication.create" || !s.Outcome.Time.Equal(at) || s.ParkedRetry != nil {
		t.Errorf("source 101: %+v", s)
	}
	if len(s.RHSM.Registrations) != 1 || s.RHSM.Registrations[0].AccountID != "123456789012" || s.RHSM.Error != "" {
		t.Errorf("source 101's registrations: %+v (the other source's account must not show)", s.RHSM)
	}
	p := decode[statusapiSource](t, mustGet(t, e, "/sources/102", asOrgA))
	if p.Outcome != nil || p.ParkedRetry == nil || p.ParkedRetry.Attempts != 4 || !p.ParkedRetry.Due.Equal(at.Add(time.Minute)) {
		t.Errorf("parked source 102: %+v", p)
	}
	// RHSM failing does not fail the answer: the outcome is still worth reading.
	e.RHSM.Fail(true)
	s = decode[statusapiSource](t, mustGet(t, e, "/sources/101", asOrgA))
	if s.Outcome == nil || s.RHSM.Error == "" || len(s.RHSM.Registrations) != 0 {
		t.Errorf("with RHSM down: %+v", s)
	}
	if strings.Contains(s.RHSM.Error, "apitest-rhsm-token") {
		t.Error("the RHSM error shows Cloudoreg's credential")
	}
}

type statusapiSource struct {
	OrgID   string `json:"org_id"`
	Outcome *struct {
		Code         string    `json:"code"`
		CustomerText string    `json:"customer_text"`
		EventType    string    `json:"event_type"`
		Time         time.Time `json:"time"`
	} `json:"outcome"`
	ParkedRetry *struct {
		Due      time.Time `json:"due"`
		Attempts int       `json:"attempts"`
	} `json:"parked_retry"`
	RHSM struct {
		Registrations []struct {
			AccountID string `json:"aws_account_id"`
		} `json:"registrations"`
		Error string `json:"error"`
	} `json:"rhsm"`
}

func mustGet(t *testing.T, e *apitest.Env, path string, who map[string]string) []byte {
	t.Helper()
	code, body := e.Do(http.MethodGet, v1+path, who)
	if code != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", path, code, body)
	}
	return body
}

// adminRoutes are the routes only operators may use.
var adminRoutes = []struct{ method, path string }{
	{http.MethodPost, "/sources/101/reconcile"},
	{http.MethodGet, "/dead-letters"},
	{http.MethodDelete, "/dead-letters?older_than=1000h"},
	{http.MethodGet, "/dead-letters/1"},
	{http.MethodPost, "/dead-letters/1/replay"},
	{http.MethodGet, "/parked"},
}

// TestStatusAPIAdminToken: every admin route takes the admin token and
// refuses everyone else; with no token configured nobody is admin.
func TestStatusAPIAdminToken(t *testing.T) {
	for _, token := range []string{adminToken, ""} {
		e := apitest.Start(t, token)
		e.PutOutcome("101", outcomes.Record{OrgID: orgA, State: "available", Time: time.Now()})
		e.DeadLetter(apitest.Message("101", orgA), "internal", 1)
		callers := []struct {
			name string
			who  map[string]string
			want func(route string) int
		}{
			{"an org's identity", asOrgA, func(string) int { return 403 }},
			{"no credentials", nil, func(string) int { return 401 }},
			{"a wrong token", map[string]string{"Authorization": "Bearer " + adminToken + "x"}, func(string) int { return 401 }},
			{"an empty token", map[string]string{"Authorization": "Bearer "}, func(string) int { return 401 }},
			{"the admin token", asAdmin, func(route string) int {
				switch {
				case token == "":
					return 401
				case strings.HasSuffix(route, "/reconcile"):
					return 202
				default:
					return 200
				}
			}},
		}
		for _, c := range callers {
			for _, r := range adminRoutes {
				t.Run(fmt.Sprintf("admin on %v, %s, %s %s", token != "", c.name, r.method, r.path), func(t *testing.T) {
					if code, body := e.Do(r.method, v1+r.path, c.who); code != c.want(r.path) {
						t.Errorf("HTTP %d, want %d: %s", code, c.want(r.path), body)
					}
				})
			}
		}
	}
}

// TestStatusAPIAccessLog: every access is logged with the route, the
// status and who asked, never with a credential.
func TestStatusAPIAccessLog(t *testing.T) {
	e := apitest.Start(t, adminToken)
	e.Do(http.MethodGet, v1+"/sources/555", asOrgB)
	e.Do(http.MethodGet, v1+"/dead-letters", asAdmin)
	e.Do(http.MethodGet, v1+"/parked", asOrgA)
	want := []map[string]any{
		{"route": "GET /api/cloudoreg/v1/sources/{id}", "source_id": "555", "status": 404.0, "who": "org:" + orgB},
		{"route": "GET /api/cloudoreg/v1/dead-letters", "status": 200.0, "who": "admin"},
		{"route": "GET /api/cloudoreg/v1/parked", "status": 403.0, "who": "org:" + orgA},
	}
	logs := e.Logs.String()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		lines = append(lines, decode[map[string]any](t, []byte(l)))
	}
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l map[string]any) bool {
			for k, v := range w {
				if l[k] != v {
					return false
				}
			}
			return true
		}) {
			t.Errorf("no access log line with %v in\n%s", w, logs)
		}
	}
	for _, secret := range []string{adminToken, apitest.Identity(orgA), apitest.Identity(orgB)} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a credential %q", secret)
		}
	}
}

type deadLetterPage struct {
	DeadLetters []struct {
		Seq      uint64 `json:"seq"`
		SourceID string `json:"source_id"`
		Reason   string `json:"reason"`
	} `json:"dead_letters"`
	NextAfter *uint64 `json:"next_after"`
}

// TestStatusAPIDeadLetterPaging: pages of every size walk every dead
// letter once, in order, across deleted ones; bad paging is a 400.
func TestStatusAPIDeadLetterPaging(t *testing.T) {
	e := apitest.Start(t, adminToken)
	var seqs []uint64
	for i := range 7 {
		seqs = append(seqs, e.DeadLetter(apitest.Message(fmt.Sprint(300+i), orgA), "budget_spent", uint64(10+i)))
	}
	// A gap: the third letter was replayed or purged.
	s, _ := e.JS.Stream(context.Background(), work.DLQStreamName)
	if err := s.DeleteMsg(context.Background(), seqs[2]); err != nil {
		t.Fatal(err)
	}
	want := slices.Delete(slices.Clone(seqs), 2, 3)
	for limit := 1; limit <= 8; limit++ {
		var got []uint64
		after, pages := "0", 0
		for pages = 1; pages < 20; pages++ {
			p := decode[deadLetterPage](t, mustGet(t, e, fmt.Sprintf("/dead-letters?limit=%d&after=%s", limit, after), asAdmin))
			for _, d := range p.DeadLetters {
				got = append(got, d.Seq)
			}
			if p.NextAfter == nil {
				break
			}
			if len(p.DeadLetters) != limit {
				t.Errorf("limit %d: a page of %d with a next page", limit, len(p.DeadLetters))
			}
			after = fmt.Sprint(*p.NextAfter)
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: walked %v, want %v", limit, got, want)
		}
	}
	p := decode[deadLetterPage](t, mustGet(t, e, "/dead-letters", asAdmin))
	if len(p.DeadLetters) != 6 || p.NextAfter != nil || p.DeadLetters[0].SourceID != "300" || p.DeadLetters[0].Reason != "budget_spent" {
		t.Errorf("the default page: %+v", p)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "after=-1", "after=x"} {
		if code, body := e.Do(http.MethodGet, v1+"/dead-letters?"+q, asAdmin); code != 400 {
			t.Errorf("?%s: HTTP %d, want 400: %s", q, code, body)
		}
	}
}

// TestStatusAPIReplay: a replay stores the work message again under its
// source's work subject, without the dead letter's headers, with the id
// replay/<seq>, and only then deletes the dead letter; a dead letter that
// is no work message is kept; a failed publish keeps the dead letter.
func TestStatusAPIReplay(t *testing.T) {
	e := apitest.Start(t, adminToken)
	ctx := context.Background()
	m := apitest.Message("401", orgA)
	seq := e.DeadLetter(m, "budget_spent", 77)
	code, body := e.Do(http.MethodPost, fmt.Sprintf("%s/dead-letters/%d/replay", v1, seq), asAdmin)
	if code != 200 {
		t.Fatalf("replay: HTTP %d: %s", code, body)
	}
	r := decode[struct {
		WorkSeq   uint64 `json:"work_seq"`
		Duplicate bool   `json:"duplicate"`
	}](t, body)
	ws, _ := e.JS.Stream(ctx, work.StreamName)
	got, err := ws.GetMsg(ctx, r.WorkSeq)
	if err != nil {
		t.Fatalf("the replayed work: %v", err)
	}
	if !strings.HasPrefix(got.Subject, work.SubjectPrefix) || !strings.HasSuffix(got.Subject, ".401") || r.Duplicate {
		t.Errorf("replayed to %s (duplicate %v)", got.Subject, r.Duplicate)
	}
	if id := got.Header.Get(jetstream.MsgIDHeader); id != fmt.Sprintf("replay/%d", seq) {
		t.Errorf("message id %q", id)
	}
	for k := range got.Header {
		if strings.HasPrefix(k, "Cloudoreg-Dlq-") {
			t.Errorf("the replayed work carries %s", k)
		}
	}
	back, err := workstream.Decode(got.Header)
	if err != nil || back != m {
		t.Errorf("the replayed work decodes to %+v (%v), want %+v", back, err, m)
	}
	if code, _ := e.Do(http.MethodGet, fmt.Sprintf("%s/dead-letters/%d", v1, seq), asAdmin); code != 404 {
		t.Errorf("the dead letter is still there after the replay (HTTP %d)", code)
	}
	if code, _ := e.Do(http.MethodPost, fmt.Sprintf("%s/dead-letters/%d/replay", v1, seq), asAdmin); code != 404 {
		t.Errorf("a second replay: HTTP %d, want 404", code)
	}

	// Undecodable (no kind): replaying it would only dead-letter it again.
	bad := e.DeadLetter(work.Message{SourceID: "402", Tenant: m.Tenant}, "undecodable", 78)
	if code, body := e.Do(http.MethodPost, fmt.Sprintf("%s/dead-letters/%d/replay", v1, bad), asAdmin); code != 422 {
		t.Errorf("replaying an undecodable letter: HTTP %d: %s", code, body)
	}
	if code, _ := e.Do(http.MethodGet, fmt.Sprintf("%s/dead-letters/%d", v1, bad), asAdmin); code != 200 {
		t.Errorf("the undecodable letter was deleted (HTTP %d)", code)
	}

	// The work stream refuses the publish: the dead letter stays.
	kept := e.DeadLetter(apitest.Message("403", orgA), "internal", 79)
	if err := e.JS.DeleteStream(ctx, work.StreamName); err != nil {
		t.Fatal(err)
	}
	if code, body := e.Do(http.MethodPost, fmt.Sprintf("%s/dead-letters/%d/replay", v1, kept), asAdmin); code != 503 {
		t.Errorf("replay without a work stream: HTTP %d: %s", code, body)
	}
	if code, _ := e.Do(http.MethodGet, fmt.Sprintf("%s/dead-letters/%d", v1, kept), asAdmin); code != 200 {
		t.Errorf("a dead letter whose replay was not stored is gone (HTTP %d)", code)
	}
}

// TestStatusAPIPurge: purge deletes exactly the letters stored before now
// minus the duration.
func TestStatusAPIPurge(t *testing.T) {
	e := apitest.Start(t, adminToken)
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, e.DeadLetter(apitest.Message(fmt.Sprint(500+i), orgA), "internal", uint64(i+1)))
	}
	fourth := decode[struct {
		Time time.Time `json:"time"`
	}](t, mustGet(t, e, fmt.Sprintf("/dead-letters/%d", seqs[3]), asAdmin))
	// "Now" is 72h after the fourth letter: older than 72h are the first three.
	e.API.Now = func() time.Time { return fourth.Time.Add(72 * time.Hour) }
	p := decode[struct {
		Purged int `json:"purged"`
	}](t, mustDo(t, e, http.MethodDelete, "/dead-letters?older_than=72h"))
	if p.Purged != 3 {
		t.Errorf("purged %d, want 3", p.Purged)
	}
	page := decode[deadLetterPage](t, mustGet(t, e, "/dead-letters", asAdmin))
	if len(page.DeadLetters) != 2 || page.DeadLetters[0].Seq != seqs[3] {
		t.Errorf("left after the purge: %+v", page.DeadLetters)
	}
	for _, q := range []string{"", "older_than=x", "older_than=-1h"} {
		if code, body := e.Do(http.MethodDelete, v1+"/dead-letters?"+q, asAdmin); code != 400 {
			t.Errorf("?%s: HTTP %d, want 400: %s", q, code, body)
		}
	}
}

func mustDo(t *testing.T, e *apitest.Env, method, path string) []byte {
	t.Helper()
	code, body := e.Do(method, v1+path, asAdmin)
	if code/100 != 2 {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, code, body)
	}
	return body
}

// TestStatusAPIReconcile: reconcile-now enqueues a check of the source
// under its recorded org (or the org named), each request its own message.
func TestStatusAPIReconcile(t *testing.T) {
	e := apitest.Start(t, adminToken)
	ctx := context.Background()
	e.PutOutcome("601", outcomes.Record{OrgID: orgA, State: "unavailable", Code: "CG3000", Time: time.Now()})
	mustDo(t, e, http.MethodPost, "/sources/601/reconcile")
	mustDo(t, e, http.MethodPost, "/sources/601/reconcile")
	mustDo(t, e, http.MethodPost, "/sources/602/reconcile?org_id="+orgB)
	if code, body := e.Do(http.MethodPost, v1+"/sources/603/reconcile", asAdmin); code != 404 {
		t.Errorf("a source of no known org: HTTP %d: %s", code, body)
	}
	ws, _ := e.JS.Stream(ctx, work.StreamName)
	var got []string
	for seq := uint64(1); seq <= 3; seq++ {
		raw, err := ws.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("work %d: %v", seq, err)
		}
		m, err := workstream.Decode(raw.Header)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Kind+" "+m.SourceID+" "+m.Tenant.OrgID)
	}
	want := []string{work.KindCheck + " 601 " + orgA, work.KindCheck + " 601 " + orgA, work.KindCheck + " 602 " + orgB}
	if !slices.Equal(got, want) {
		t.Errorf("enqueued %v, want %v", got, want)
	}
}

// TestStatusAPIParked lists parked retries soonest first.
func TestStatusAPIParked(t *testing.T) {
	e := apitest.Start(t, adminToken)
	now := time.Now().UTC()
	e.Park("701", orgA, 3, now.Add(3*time.Minute), now)
	e.Park("702", orgB, 5, now.Add(time.Minute), now.Add(-time.Hour))
	p := decode[struct {
		Parked []struct {
			SourceID string `json:"source_id"`
			OrgID    string `json:"org_id"`
			Attempts int    `json:"attempts"`
		} `json:"parked"`
	}](t, mustGet(t, e, "/parked", asAdmin))
	if len(p.Parked) != 2 || p.Parked[0].SourceID != "702" || p.Parked[0].OrgID != orgB || p.Parked[1].Attempts != 3 {
		t.Errorf("parked: %+v", p.Parked)
	}
}
