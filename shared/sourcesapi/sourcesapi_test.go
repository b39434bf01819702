package sourcesapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"encoding/pem"
	"os"
	"path/filepath"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
)

// class is how a caller must treat a failed read.
type class string

const (
	gone         class = "not found"
	unauthorized class = "unauthorized"
	transient    class = "transient"
	invalid      class = "invalid"
)

func classOf(err error) class {
	switch {
	case errors.Is(err, failure.ErrNotFound):
		return gone
	case failure.ReasonOf(err) == failure.ReasonSourcesUnauthorized && failure.IsTransient(err) && errors.Is(err, failure.ErrConfiguration):
		return unauthorized
	case failure.ReasonOf(err) == failure.ReasonSourcesRefused:
		if failure.IsTransient(err) {
			return "refused and transient: contradictory"
		}
		return invalid
	case failure.ReasonOf(err) == "" && failure.IsTransient(err) && failure.TargetOf(err) == target:
		return transient
	}
	return class("unclassified: " + err.Error())
}

// Every HTTP status Sources can answer with falls into exactly one class,
// and only 5xx and 429 (and 401/403, an operator's problem) are retried.
func TestEveryStatusIsClassified(t *testing.T) {
	for code := 100; code < 600; code++ {
		if code == http.StatusOK || code == http.StatusSwitchingProtocols || (code >= 100 && code < 200) {
			continue // 200 is success; 1xx are not final answers
		}
		want := invalid
		switch {
		case code == http.StatusNotFound:
			want = gone
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			want = unauthorized
		case code == http.StatusTooManyRequests || code >= 500:
			want = transient
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
		_, err := mustNew(t, srv.URL, "psk", time.Second).Application(context.Background(), event.Tenant{OrgID: "1"}, "7")
		srv.Close()
		if err == nil {
			t.Errorf("HTTP %d: no error", code)
			continue
		}
		if got := classOf(err); got != want {
			t.Errorf("HTTP %d: %s, want %s (%v)", code, got, want, err)
		}
	}
}

func TestTransportFailuresAreClassified(t *testing.T) {
	undecodable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{not json")) }))
	defer undecodable.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	_ = ln.Close()
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, _, _ := w.(http.Hijacker).Hijack()
		_ = c.Close()
	}))
	defer hangUp.Close()

	cases := []struct {
		name   string
		url    string
		tenant event.Tenant
		want   class
	}{
		{"undecodable answer", undecodable.URL, event.Tenant{OrgID: "1"}, invalid},
		{"timeout", slow.URL, event.Tenant{OrgID: "1"}, transient},
		{"connection refused", refused, event.Tenant{OrgID: "1"}, transient},
		{"connection closed", hangUp.URL, event.Tenant{OrgID: "1"}, transient},
		{"control character in a tenant header", undecodable.URL, event.Tenant{OrgID: "1\n2"}, invalid},
		{"DEL in a tenant header", undecodable.URL, event.Tenant{AccountNumber: "1\x7f"}, invalid},
	}
	for _, c := range cases {
		_, err := mustNew(t, c.url, "psk", 200*time.Millisecond).Application(context.Background(), c.tenant, "7")
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if got := classOf(err); got != c.want {
			t.Errorf("%s: %s, want %s (%v)", c.name, got, c.want, err)
		}
	}
}

// The cached application type is asked for once.
func TestCloudMeterTypeIDIsCached(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls++
		_, _ = w.Write([]byte(`{"data":[{"id":"5"}]}`))
	}))
	defer srv.Close()
	c := mustNew(t, srv.URL, "psk", time.Second)
	for range 3 {
		id, err := c.CloudMeterTypeID(context.Background(), event.Tenant{OrgID: "1"})
		if err != nil || id != "5" {
			t.Fatalf("CloudMeterTypeID = %q, %v", id, err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d calls to Sources, want 1", calls)
	}
}

// The link table as the real Sources answers it: every id a JSON string, a
// collection with meta and links.
func TestLinks(t *testing.T) {
	const page = `{"meta":{"count":3,"limit":1000,"offset":0},"links":{"first":"/api/sources/v3.1/application_authentications?limit=1000&offset=0","last":"/api/sources/v3.1/application_authentications?limit=1000&offset=0"},
	"data":[{"id":"31","created_at":"2026-11-22T03:37:38Z","updated_at":"2026-11-22T03:37:38Z","paused_at":null,"application_id":"21","authentication_id":"41"},
	        {"id":"32","created_at":"2026-11-22T03:37:38Z","updated_at":"2026-11-22T03:37:38Z","paused_at":null,"application_id":"21","authentication_id":"42"},
	        {"id":"33","created_at":"2026-11-22T03:37:38Z","updated_at":"2026-11-22T03:37:38Z","paused_at":null,"application_id":"22","authentication_id":"41"}]}`
	var got []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r)
		_, _ = w.Write([]byte(page))
	}))
	defer srv.Close()
	c := mustNew(t, srv.URL, "psk", time.Second)
	tenant := event.Tenant{OrgID: "1234567", AccountNumber: "000111"}
	cases := []struct {
		by    sources.LinkFilter
		id    string
		query string
		want  []sources.Link
	}{
		// The server ignores the filter here: rows of other ids are dropped.
		{sources.LinksOfApplication, "21", "filter%5Bapplication_id%5D=21&limit=1000", []sources.Link{{ID: "31", ApplicationID: "21", AuthenticationID: "41"}, {ID: "32", ApplicationID: "21", AuthenticationID: "42"}}},
		{sources.LinksOfAuthentication, "41", "filter%5Bauthentication_id%5D=41&limit=1000", []sources.Link{{ID: "31", ApplicationID: "21", AuthenticationID: "41"}, {ID: "33", ApplicationID: "22", AuthenticationID: "41"}}},
		{sources.LinksOfApplication, "23", "filter%5Bapplication_id%5D=23&limit=1000", nil},
	}
	for i, tc := range cases {
		links, err := c.Links(context.Background(), tenant, tc.by, tc.id)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.by, tc.id, err)
		}
		if !slices.Equal(links, tc.want) {
			t.Errorf("%s %s: %+v, want %+v", tc.by, tc.id, links, tc.want)
		}
		r := got[i]
		if r.URL.Path != PublicBase+"/application_authentications" || r.URL.RawQuery != tc.query {
			t.Errorf("%s %s: asked %s?%s", tc.by, tc.id, r.URL.Path, r.URL.RawQuery)
		}
		if r.Header.Get(event.HeaderOrgID) != "1234567" || r.Header.Get(event.HeaderAccount) != "000111" || r.Header.Get(event.HeaderPSK) != "psk" {
			t.Errorf("headers %v", r.Header)
		}
	}
}

// Every answer the link table may give is either links or a classified failure.
func TestLinksFailuresAreClassified(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   class
	}{
		{"ids as numbers (not what Sources answers)", 200, `{"data":[{"id":31,"application_id":21,"authentication_id":41}]}`, invalid},
		{"not JSON", 200, `<html>`, invalid},
		{"data not a list", 200, `{"data":{"id":"31"}}`, invalid},
		{"unknown filter", 400, `{"errors":[{"detail":"unsupported filter","status":"400"}]}`, invalid},
		{"wrong PSK", 401, ``, unauthorized},
		{"forbidden", 403, ``, unauthorized},
		{"tenant unknown", 404, ``, gone},
		{"overloaded", 503, ``, transient},
		{"throttled", 429, ``, transient},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		}))
		links, err := mustNew(t, srv.URL, "psk", time.Second).Links(context.Background(), event.Tenant{OrgID: "1"}, sources.LinksOfApplication, "21")
		srv.Close()
		if err == nil || links != nil {
			t.Errorf("%s: %+v, %v", tc.name, links, err)
			continue
		}
		if got := classOf(err); got != tc.want {
			t.Errorf("%s: %s, want %s (%v)", tc.name, got, tc.want, err)
		}
	}
	// An empty collection is an answer: nothing is attached.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":[],"meta":{"count":0,"limit":1000,"offset":0},"links":{}}`))
	}))
	defer srv.Close()
	if links, err := mustNew(t, srv.URL, "psk", time.Second).Links(context.Background(), event.Tenant{OrgID: "1"}, sources.LinksOfApplication, "21"); err != nil || len(links) != 0 {
		t.Errorf("empty collection: %+v, %v", links, err)
	}
}

func mustNew(t *testing.T, base, psk string, timeout time.Duration) *Client {
	t.Helper()
	c, err := New(base, psk, timeout, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An https Sources whose certificate the cluster's service CA signed is
// trusted with SOURCES_CA_FILE, and refused without it.
func TestTrustsTheConfiguredCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"id":"7","source_id":"3"}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "service-ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(srv.URL, "psk", time.Second, ca)
	if err != nil {
		t.Fatal(err)
	}
	if app, err := c.Application(context.Background(), event.Tenant{OrgID: "1"}, "7"); err != nil || app.SourceID != "3" {
		t.Fatalf("with the CA: %+v, %v", app, err)
	}
	if _, err := mustNew(t, srv.URL, "psk", time.Second).Application(context.Background(), event.Tenant{OrgID: "1"}, "7"); err == nil {
		t.Fatal("without the CA the certificate was trusted")
	}
	if _, err := New(srv.URL, "psk", time.Second, filepath.Join(t.TempDir(), "missing.crt")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
