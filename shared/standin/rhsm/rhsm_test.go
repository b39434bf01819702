package rhsm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/sirupsen/logrus"
)

const (
	orgA = "111111"
	orgB = "222222"
	acct = "000123456789"
)

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	return New(opts)
}

// do sends one request straight to the handler.
func do(t *testing.T, h http.Handler, method, target, org string, body any, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	r := httptest.NewRequest(method, target, rd)
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if org != "" {
		r.Header.Set(OrgHeader, org)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func reg(id, source string) []Account {
	return []Account{{ID: id, Nickname: "", Verified: true, SourceID: source}}
}

const (
	regURL     = DefaultPrefix + "/cloud_access_providers/AWS/accounts"
	enabledURL = DefaultPrefix + "/cloud_access_providers/enabled"
)

func removeURL(source string) string {
	return DefaultPrefix + "/cloud_access_providers/accounts?sourceID=" + source
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d (body %q)", w.Code, want, w.Body.String())
	}
}

func wantJSONError(t *testing.T, w *httptest.ResponseRecorder, want int) ErrorBody {
	t.Helper()
	wantStatus(t, w, want)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var e ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body.String(), err)
	}
	if e.Error.Code != want || e.Error.Message == "" {
		t.Fatalf("error body %+v, want code %d and a message", e, want)
	}
	return e
}

type enabledBody struct {
	Body []struct {
		ShortName string    `json:"shortName"`
		Accounts  []Account `json:"accounts"`
	} `json:"body"`
}

func enabled(t *testing.T, h http.Handler, org string) []Account {
	t.Helper()
	w := do(t, h, http.MethodGet, enabledURL, org, nil)
	wantStatus(t, w, http.StatusOK)
	var b enabledBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("enabled body %q: %v", w.Body.String(), err)
	}
	var out []Account
	for _, p := range b.Body {
		if p.ShortName != "AWS" {
			t.Fatalf("unexpected provider %q", p.ShortName)
		}
		out = append(out, p.Accounts...)
	}
	return out
}

func TestRegisterListRemove(t *testing.T) {
	s := newServer(t, Options{})
	if got := enabled(t, s, orgA); len(got) != 0 {
		t.Fatalf("fresh stand-in lists %v", got)
	}
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg("000000000002", "10")), http.StatusNoContent)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "11")), http.StatusNoContent)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgB, reg("999999999999", "20")), http.StatusNoContent)

	want := []Account{
		{ID: "000000000002", Verified: true, SourceID: "10"},
		{ID: acct, Verified: true, SourceID: "11"},
	}
	if got := enabled(t, s, orgA); !reflect.DeepEqual(got, want) {
		t.Fatalf("enabled %v, want %v", got, want)
	}
	if got := s.Registrations(); !reflect.DeepEqual(got, map[string][]Account{
		orgA: want, orgB: {{ID: "999999999999", Verified: true, SourceID: "20"}},
	}) {
		t.Fatalf("registrations %v", got)
	}

	// Another org cannot remove orgA's source.
	wantJSONError(t, do(t, s, http.MethodDelete, removeURL("10"), orgB, nil), http.StatusNotFound)
	wantStatus(t, do(t, s, http.MethodDelete, removeURL("10"), orgA, nil), http.StatusNoContent)
	wantJSONError(t, do(t, s, http.MethodDelete, removeURL("10"), orgA, nil), http.StatusNotFound)
	if got := enabled(t, s, orgA); !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("after remove: enabled %v, want %v", got, want[1:])
	}
	// A removed account can be registered again, by anyone.
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgB, reg("000000000002", "21")), http.StatusNoContent)
}

func TestRegisterConflicts(t *testing.T) {
	s := newServer(t, Options{})
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusNoContent)

	// Same org, same account: 409 by default, nothing changes.
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusConflict)
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "12")), http.StatusConflict)
	// Another org: 409.
	e := wantJSONError(t, do(t, s, http.MethodPost, regURL, orgB, reg(acct, "20")), http.StatusConflict)
	if !strings.Contains(e.Error.Message, "another organization") {
		t.Fatalf("other-org conflict message %q", e.Error.Message)
	}
	// All or nothing: a batch with one conflicting account stores none.
	batch := append(reg("000000000001", "20"), reg(acct, "20")...)
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgB, batch), http.StatusConflict)
	if got := enabled(t, s, orgB); len(got) != 0 {
		t.Fatalf("orgB lists %v after a refused batch", got)
	}
	if got := enabled(t, s, orgA); len(got) != 1 || got[0].SourceID != "10" {
		t.Fatalf("orgA lists %v, want the one account of source 10", got)
	}

	// Configured to accept the same org's re-registration.
	s.SetSameOrgReregisterSucceeds(true)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusNoContent)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "12")), http.StatusNoContent)
	if got := enabled(t, s, orgA); len(got) != 1 || got[0].SourceID != "12" {
		t.Fatalf("orgA lists %v, want the one account now of source 12", got)
	}
	// Still a conflict for another org.
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgB, reg(acct, "20")), http.StatusConflict)

	s2 := newServer(t, Options{SameOrgReregisterSucceeds: true})
	wantStatus(t, do(t, s2, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusNoContent)
	wantStatus(t, do(t, s2, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusNoContent)
}

func TestBadRequests(t *testing.T) {
	s := newServer(t, Options{})
	cases := []struct {
		name   string
		method string
		url    string
		org    string
		body   any
		hdr    []string
		want   int
	}{
		{"register without org", http.MethodPost, regURL, "", reg(acct, "1"), nil, 400},
		{"register blank org", http.MethodPost, regURL, "  ", reg(acct, "1"), nil, 400},
		{"register malformed", http.MethodPost, regURL, orgA, `{"id":`, nil, 400},
		{"register object not array", http.MethodPost, regURL, orgA, reg(acct, "1")[0], nil, 400},
		{"register empty array", http.MethodPost, regURL, orgA, `[]`, nil, 400},
		{"register trailing data", http.MethodPost, regURL, orgA, `[{"id":"000123456789","sourceId":"1"}] []`, nil, 400},
		{"register unknown field", http.MethodPost, regURL, orgA, `[{"id":"000123456789","sourceID":"1"}]`, nil, 400},
		{"register numeric id", http.MethodPost, regURL, orgA, `[{"id":123456789012,"sourceId":"1"}]`, nil, 400},
		{"register null account", http.MethodPost, regURL, orgA, `[null]`, nil, 400},
		{"register 11 digits", http.MethodPost, regURL, orgA, reg("12345678901", "1"), nil, 400},
		{"register 13 digits", http.MethodPost, regURL, orgA, reg("1234567890123", "1"), nil, 400},
		{"register letters", http.MethodPost, regURL, orgA, reg("12345678901a", "1"), nil, 400},
		{"register no source", http.MethodPost, regURL, orgA, reg(acct, ""), nil, 400},
		{"register duplicate ids", http.MethodPost, regURL, orgA, append(reg(acct, "1"), reg(acct, "1")...), nil, 400},
		{"register wrong content type", http.MethodPost, regURL, orgA, reg(acct, "1"), []string{"Content-Type", "text/plain"}, 415},
		{"register other provider", http.MethodPost, DefaultPrefix + "/cloud_access_providers/GCE/accounts", orgA, reg(acct, "1"), nil, 400},
		{"register wrong method", http.MethodPut, regURL, orgA, reg(acct, "1"), nil, 405},
		{"remove without org", http.MethodDelete, removeURL("1"), "", nil, nil, 400},
		{"remove without source", http.MethodDelete, DefaultPrefix + "/cloud_access_providers/accounts", orgA, nil, nil, 400},
		{"remove wrong method", http.MethodGet, removeURL("1"), orgA, nil, nil, 405},
		{"enabled without org", http.MethodGet, enabledURL, "", nil, nil, 400},
		{"enabled wrong method", http.MethodPost, enabledURL, orgA, nil, nil, 405},
		{"unknown path", http.MethodGet, DefaultPrefix + "/nope", orgA, nil, nil, 404},
		{"outside prefix", http.MethodGet, "/cloud_access_providers/enabled", orgA, nil, nil, 404},
		{"prefix look-alike", http.MethodGet, DefaultPrefix + "x/cloud_access_providers/enabled", orgA, nil, nil, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantJSONError(t, do(t, s, c.method, c.url, c.org, c.body, c.hdr...), c.want)
		})
	}
	if got := s.Registrations(); len(got) != 0 {
		t.Fatalf("bad requests registered %v", got)
	}
}

func TestTooManyAccounts(t *testing.T) {
	s := newServer(t, Options{})
	var batch []Account
	for i := range maxAccounts + 1 {
		batch = append(batch, Account{ID: fmt.Sprintf("%012d", i), SourceID: "1"})
	}
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, batch), http.StatusBadRequest)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, batch[:maxAccounts]), http.StatusNoContent)
	if got := len(enabled(t, s, orgA)); got != maxAccounts {
		t.Fatalf("listed %d accounts, want %d", got, maxAccounts)
	}
}

func TestPrefix(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{
		{"", DefaultPrefix}, {"/", ""}, {"api/rhsm/", "/api/rhsm"}, {"/x", "/x"},
	} {
		s := newServer(t, Options{Prefix: c.prefix})
		if s.Prefix() != c.want {
			t.Fatalf("prefix %q -> %q, want %q", c.prefix, s.Prefix(), c.want)
		}
		url := c.want + "/cloud_access_providers/AWS/accounts"
		wantStatus(t, do(t, s, http.MethodPost, url, orgA, reg(acct, "1")), http.StatusNoContent)
		if c.want != DefaultPrefix {
			wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil), http.StatusNotFound)
		}
	}
}

func TestAuth(t *testing.T) {
	const secretValue = "s3cr3t-header-value"
	const secretToken = "s3cr3t-bearer-token"
	var logs bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&logs)
	logger.SetFormatter(&logrus.JSONFormatter{})

	t.Run("header", func(t *testing.T) {
		s := newServer(t, Options{AuthHeader: "X-Rhsm-Key", AuthValue: secretValue, Logger: logger})
		wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil), http.StatusUnauthorized)
		wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, "X-Rhsm-Key", "wrong"), http.StatusUnauthorized)
		wantStatus(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, "X-Rhsm-Key", secretValue), http.StatusOK)
		// Admin paths need no credential.
		wantStatus(t, do(t, s, http.MethodGet, CallsPath, "", nil), http.StatusOK)
	})
	t.Run("bearer", func(t *testing.T) {
		s := newServer(t, Options{BearerToken: secretToken, Logger: logger})
		w := do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"))
		wantJSONError(t, w, http.StatusUnauthorized)
		if w.Header().Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
		wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"), "Authorization", secretToken), http.StatusUnauthorized)
		wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"), "Authorization", "Basic "+secretToken), http.StatusUnauthorized)
		wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"), "Authorization", "Bearer x"+secretToken), http.StatusUnauthorized)
		if len(s.Registrations()) != 0 {
			t.Fatal("unauthorized request registered")
		}
		wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"), "Authorization", "Bearer "+secretToken), http.StatusNoContent)
		wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg("000000000001", "1"), "Authorization", "bearer "+secretToken), http.StatusNoContent)
	})
	t.Run("both", func(t *testing.T) {
		s := newServer(t, Options{AuthHeader: "X-Rhsm-Key", AuthValue: secretValue, BearerToken: secretToken, Logger: logger})
		wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, "X-Rhsm-Key", secretValue), http.StatusUnauthorized)
		wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, "Authorization", "Bearer "+secretToken), http.StatusUnauthorized)
		wantStatus(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, "X-Rhsm-Key", secretValue, "Authorization", "Bearer "+secretToken), http.StatusOK)

		calls, _ := json.Marshal(s.Calls())
		for _, secret := range []string{secretValue, secretToken} {
			if strings.Contains(string(calls), secret) {
				t.Fatalf("calls hold the credential: %s", calls)
			}
		}
	})
	if logs.Len() == 0 {
		t.Fatal("logger received nothing")
	}
	for _, secret := range []string{secretValue, secretToken} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log holds the credential: %s", logs.String())
		}
	}
}

func TestCallsAndAdminEndpoints(t *testing.T) {
	s := newServer(t, Options{})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)

	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusNoContent)
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgB, reg(acct, "20")), http.StatusConflict)
	wantStatus(t, do(t, s, http.MethodDelete, removeURL("10"), orgA, nil), http.StatusNoContent)
	wantStatus(t, do(t, s, http.MethodGet, enabledURL, orgA, nil), http.StatusOK)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "10")), http.StatusNoContent)

	want := []Call{
		{Method: "POST", Path: regURL, Org: orgA, SourceID: "10", AccountID: acct, Status: 204, Time: fixedNow},
		{Method: "POST", Path: regURL, Org: orgB, SourceID: "20", AccountID: acct, Status: 409, Time: fixedNow},
		{Method: "DELETE", Path: DefaultPrefix + "/cloud_access_providers/accounts", Org: orgA, SourceID: "10", AccountID: acct, Status: 204, Time: fixedNow},
		{Method: "GET", Path: enabledURL, Org: orgA, Status: 200, Time: fixedNow},
		{Method: "POST", Path: regURL, Org: orgA, SourceID: "10", AccountID: acct, Status: 204, Time: fixedNow},
	}
	if got := s.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls\n got %+v\nwant %+v", got, want)
	}

	var calls []Call
	getJSON(t, srv.URL+CallsPath, &calls)
	if !reflect.DeepEqual(calls, want) {
		t.Fatalf("GET %s\n got %+v\nwant %+v", CallsPath, calls, want)
	}
	var regs map[string][]Account
	getJSON(t, srv.URL+RegistrationsPath, &regs)
	if !reflect.DeepEqual(regs, map[string][]Account{orgA: reg(acct, "10")}) {
		t.Fatalf("GET %s: %v", RegistrationsPath, regs)
	}

	// Admin paths are not recorded; wrong methods are refused.
	wantStatus(t, do(t, s, http.MethodPost, CallsPath, "", nil), http.StatusMethodNotAllowed)
	wantStatus(t, do(t, s, http.MethodDelete, RegistrationsPath, "", nil), http.StatusMethodNotAllowed)
	wantStatus(t, do(t, s, http.MethodGet, ResetPath, "", nil), http.StatusMethodNotAllowed)
	if n := len(s.Calls()); n != len(want) {
		t.Fatalf("%d calls after admin requests, want %d", n, len(want))
	}

	resp, err := http.Post(srv.URL+ResetPath, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("reset: %d", resp.StatusCode)
	}
	if len(s.Calls()) != 0 || len(s.Registrations()) != 0 {
		t.Fatalf("after reset: calls %v registrations %v", s.Calls(), s.Registrations())
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestMaxCalls(t *testing.T) {
	s := newServer(t, Options{MaxCalls: 2})
	for _, src := range []string{"1", "2", "3"} {
		do(t, s, http.MethodDelete, removeURL(src), orgA, nil)
	}
	calls := s.Calls()
	if len(calls) != 2 || calls[0].SourceID != "2" || calls[1].SourceID != "3" {
		t.Fatalf("calls %+v, want the last two", calls)
	}
	s = newServer(t, Options{MaxCalls: -1})
	for range DefaultMaxCalls + 1 {
		do(t, s, http.MethodGet, enabledURL, orgA, nil)
	}
	if n := len(s.Calls()); n != DefaultMaxCalls+1 {
		t.Fatalf("unbounded log holds %d calls", n)
	}
}

func TestFaults(t *testing.T) {
	s := newServer(t, Options{BearerToken: "tok"})
	auth := []string{"Authorization", "Bearer tok"}

	s.Faults().Set(faults.Fault{Status: http.StatusServiceUnavailable, Count: 1})
	wantJSONError(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"), auth...), http.StatusServiceUnavailable)
	wantStatus(t, do(t, s, http.MethodPost, regURL, orgA, reg(acct, "1"), auth...), http.StatusNoContent)

	s.Faults().Set(faults.Fault{Status: http.StatusTooManyRequests, Code: "slow down"})
	e := wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, auth...), http.StatusTooManyRequests)
	if e.Error.Message != "slow down" {
		t.Fatalf("fault message %q", e.Error.Message)
	}
	// Faults apply before authentication: an unauthenticated call fails the same way.
	wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil), http.StatusTooManyRequests)
	s.Faults().Clear()
	wantStatus(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, auth...), http.StatusOK)

	// The admin path of the injector works through the stand-in, without credential.
	wantStatus(t, do(t, s, http.MethodPost, faults.AdminPath, "", `{"status":500,"count":1}`), http.StatusNoContent)
	wantJSONError(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, auth...), http.StatusInternalServerError)
	wantStatus(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, auth...), http.StatusOK)

	// A delayed call whose client gave up is recorded with status 0.
	s.Faults().Set(faults.Fault{Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest(http.MethodGet, enabledURL, nil).WithContext(ctx)
	r.Header.Set(OrgHeader, orgA)
	s.ServeHTTP(httptest.NewRecorder(), r)

	calls := s.Calls()
	statuses := make([]int, len(calls))
	for i, c := range calls {
		statuses[i] = c.Status
	}
	want := []int{503, 204, 429, 429, 200, 500, 200, 0}
	if !reflect.DeepEqual(statuses, want) {
		t.Fatalf("recorded statuses %v, want %v", statuses, want)
	}

	// Reset clears the fault too.
	s.Reset()
	wantStatus(t, do(t, s, http.MethodGet, enabledURL, orgA, nil, auth...), http.StatusOK)
}

// TestOverHTTP drives the stand-in over loopback with the wire format the
// Cloudoreg client sends.
func TestOverHTTP(t *testing.T) {
	s := newServer(t, Options{AuthHeader: "X-Rhsm-Key", AuthValue: "v"})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)

	send := func(method, path, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(OrgHeader, orgA)
		req.Header.Set("X-Rhsm-Key", "v")
		if body != "" {
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	body := `[{"id":"000123456789","nickname":"","verified":true,"sourceId":"7"}]`
	if got := send(http.MethodPost, regURL, body); got != http.StatusNoContent {
		t.Fatalf("register: %d", got)
	}
	if got := send(http.MethodPost, regURL, body); got != http.StatusConflict {
		t.Fatalf("register again: %d", got)
	}
	if got := send(http.MethodDelete, removeURL("7"), ""); got != http.StatusNoContent {
		t.Fatalf("remove: %d", got)
	}
	if got := send(http.MethodDelete, removeURL("7"), ""); got != http.StatusNotFound {
		t.Fatalf("remove again: %d", got)
	}
}
