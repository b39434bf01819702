package testkit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sentry is a Sentry (Glitchtip) endpoint on loopback: it takes envelopes
// as the SDKs post them to /api/<project>/envelope/ and keeps them, raw and
// as events.
type Sentry struct {
	srv *httptest.Server
	mu  sync.Mutex
	raw []string
	evs []map[string]any
}

// NewSentry starts the endpoint; it stops with the test.
func NewSentry(t testing.TB) *Sentry {
	t.Helper()
	s := &Sentry{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// DSN is the DSN of project 1 with the public key key.
func (s *Sentry) DSN(key string) string {
	return strings.Replace(s.srv.URL, "http://", "http://"+key+"@", 1) + "/1"
}

func (s *Sentry) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/api/1/") {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	events, err := envelopeEvents(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.raw = append(s.raw, string(b))
	s.evs = append(s.evs, events...)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"00000000000000000000000000000000"}`)
}

// envelopeEvents reads the event items of an envelope: a header line, then
// per item a header line and its payload (of the header's length, or one line).
func envelopeEvents(b []byte) ([]map[string]any, error) {
	rd := bufio.NewReader(bytes.NewReader(b))
	if _, err := rd.ReadBytes('\n'); err != nil {
		return nil, err
	}
	var out []map[string]any
	for {
		line, err := rd.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) == 0 && err != nil {
			return out, nil
		}
		var item struct {
			Type   string `json:"type"`
			Length int    `json:"length"`
		}
		if err := json.Unmarshal(line, &item); err != nil {
			return nil, err
		}
		var payload []byte
		if item.Length > 0 {
			payload = make([]byte, item.Length)
			if _, err := io.ReadFull(rd, payload); err != nil {
				return nil, err
			}
			_, _ = rd.ReadBytes('\n')
		} else if payload, err = rd.ReadBytes('\n'); err != nil && len(payload) == 0 {
			return nil, err
		}
		if item.Type != "event" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
}

// Events returns the events received so far.
func (s *Sentry) Events() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.evs...)
}

// Raw returns every envelope received, as sent.
func (s *Sentry) Raw() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.raw, "\n")
}

// AwaitEvents waits until n events arrived, or fails the test at the deadline.
func (s *Sentry) AwaitEvents(t testing.TB, n int, within time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if evs := s.Events(); len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentry endpoint: %d event(s) after %s, want %d", len(s.Events()), within, n)
		}
		<-tick.C
	}
}
