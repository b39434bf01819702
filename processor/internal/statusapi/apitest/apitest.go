// Package apitest runs the real status API (the processor's handlers and
// adapters) for tests: on an embedded JetStream server with the streams and
// buckets the processor declares, and an RHSM that speaks the Cloud Access
// API's JSON over HTTP, all on loopback. It writes outcomes, parked retries
// and dead letters the way the worker does.
package apitest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi"
	"github.com/cloudoreg/cloudoreg/processor/internal/worker"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// Env is a running status API and what backs it.
type Env struct {
	t        testing.TB
	URL      string // the API's base URL (http://127.0.0.1:port)
	JS       jetstream.JetStream
	Logs     *testkit.SyncBuffer
	Outcomes *outcomes.Store
	Parked   jetstream.KeyValue
	RHSM     *RHSM
	API      *statusapi.API // to set its clock
	Routes   []string       // the patterns the API registered
}

// recordingMux notes the patterns registered on it.
type recordingMux struct {
	*http.ServeMux
	patterns *[]string
}

func (m recordingMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	*m.patterns = append(*m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// Start runs the API with adminToken ("" turns admin access off).
func Start(t testing.TB, adminToken string) *Env {
	t.Helper()
	_, js := testkit.JetStream(t, testkit.NATSServer(t))
	ctx := context.Background()
	var err error
	settings := workstream.StreamSettings{Partitions: 4, Replicas: 1, MaxAge: time.Hour, Duplicates: 20 * time.Minute, DLQMaxAge: time.Hour}
	if err := workstream.EnsureStreams(ctx, js, settings); err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, JS: js, Logs: &testkit.SyncBuffer{}, RHSM: &RHSM{regs: map[string][]rhsm.Account{}}}
	if e.Outcomes, err = outcomes.Open(ctx, js, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.Parked, err = worker.OpenParked(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	rhsmSrv := httptest.NewServer(e.RHSM)
	t.Cleanup(rhsmSrv.Close)
	const token = "apitest-rhsm-token" //nolint:gosec // G101: a test credential of the stand-in
	client, err := rhsm.New(rhsm.Config{BaseURL: rhsmSrv.URL + "/management/v1", BearerToken: token, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(e.Logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	api, err := app.StatusAPI(ctx, js, client, adminToken, logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	e.API = api
	mux := http.NewServeMux()
	api.Register(recordingMux{mux, &e.Routes})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// Identity is an x-rh-identity of a user of org.
func Identity(org string) string {
	b, _ := json.Marshal(map[string]any{"identity": map[string]any{
		"org_id": org, "type": "User", "auth_type": "jwt-auth", "internal": map[string]any{"org_id": org},
		"user": map[string]any{"username": "someone@example.com"},
	}})
	return base64.StdEncoding.EncodeToString(b)
}

// PutOutcome records a source's outcome as the worker does.
func (e *Env) PutOutcome(sourceID string, r outcomes.Record) {
	e.t.Helper()
	if err := e.Outcomes.Put(context.Background(), sourceID, r); err != nil {
		e.t.Fatal(err)
	}
}

// Park writes a parked retry as the worker's parkOrGiveUp does.
func (e *Env) Park(sourceID, org string, attempts int, due, firstFailure time.Time) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{
		"due": due, "attempt": attempts, "first_failure": firstFailure, "kind": "ApplicationAuthentication.create",
		"source_id": sourceID, "org_id": org, "identity": Identity(org),
	})
	if _, err := e.Parked.Put(context.Background(), "source."+sourceID, b); err != nil {
		e.t.Fatal(err)
	}
}

// DeadLetter stores m in the dead-letter stream with the headers the
// worker's dead-lettering adds, and returns its sequence.
func (e *Env) DeadLetter(m work.Message, reason string, workSeq uint64) uint64 {
	e.t.Helper()
	h := workstream.Header(m)
	h.Set(worker.HeaderDLQReason, reason)
	h.Set(worker.HeaderDLQDetail, "apitest: "+reason)
	h.Set(worker.HeaderDLQDeliveries, "1")
	h.Set(worker.HeaderDLQStreamSeq, strconv.FormatUint(workSeq, 10))
	h.Set(worker.HeaderDLQSubject, work.Subject(m.SourceID))
	h.Set(jetstream.MsgIDHeader, "dlq/"+strconv.FormatUint(workSeq, 10))
	ack, err := e.JS.PublishMsg(context.Background(), &nats.Msg{Subject: work.DLQPrefix + "0." + m.SourceID, Header: h})
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// Message is a work message of source under org, as the listener makes it.
func Message(sourceID, org string) work.Message {
	m := work.Message{Kind: "ApplicationAuthentication.create", SourceID: sourceID, ApplicationID: "9" + sourceID,
		Identity: Identity(org), Origin: "platform.sources.event-stream/0/" + sourceID}
	m.Tenant.OrgID = org
	return m
}

// Do sends a request with the given headers and returns the status and body.
func (e *Env) Do(method, path string, header map[string]string) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.URL+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&b)
	return resp.StatusCode, b
}

// RHSM serves the enabled-accounts listing of the Cloud Access API
// (GET /management/v1/cloud_access_providers/enabled, the org in
// X-RhsmApi-AccountID), which is all the status API asks it.
type RHSM struct {
	mu   sync.Mutex
	regs map[string][]rhsm.Account // by org
	fail bool
}

// Register adds what RHSM holds for org.
func (r *RHSM) Register(org string, a rhsm.Account) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.regs[org] = append(r.regs[org], a)
}

// Fail makes RHSM answer 503 (or answer again).
func (r *RHSM) Fail(fail bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fail
}

func (r *RHSM) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != http.MethodGet || req.URL.Path != "/management/v1/cloud_access_providers/enabled" {
		http.NotFound(w, req)
		return
	}
	if r.fail {
		http.Error(w, `{"message":"unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	accts := r.regs[req.Header.Get(rhsm.OrgHeader)]
	if accts == nil {
		accts = []rhsm.Account{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"body": []any{map[string]any{"shortName": rhsm.Provider, "accounts": accts}}})
}
