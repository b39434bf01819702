package sources

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
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
	case errors.Is(err, ErrNotFound):
		return gone
	case errors.Is(err, ErrUnauthorized):
		return unauthorized
	case errors.Is(err, ErrInvalid):
		if IsTransient(err) {
			return "invalid and transient: contradictory"
		}
		return invalid
	case IsTransient(err):
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
		_, err := New(srv.URL, "psk", time.Second).Application(context.Background(), event.Tenant{OrgID: "1"}, "7")
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
		_, err := New(c.url, "psk", 200*time.Millisecond).Application(context.Background(), c.tenant, "7")
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
	c := New(srv.URL, "psk", time.Second)
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
