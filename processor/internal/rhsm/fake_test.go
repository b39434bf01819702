package rhsm

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	standin "github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
)

// fakeRHSM serves the client's tests with the RHSM stand-in (the same one
// the local stack and the end-to-end tests run), wrapped to record each raw
// request and to let a test answer a request itself, before the stand-in,
// like an injected fault. Set the credential fields and sameOrgOK before
// the first request: the stand-in is built then.
type fakeRHSM struct {
	authHeader  string
	authValue   string
	bearerToken string
	sameOrgOK   bool

	once     sync.Once
	standin  *standin.Server
	mu       sync.Mutex
	requests []fakeRequest
	// intercept, when set, may answer a request itself (return true) before
	// the stand-in sees it.
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

type fakeRequest struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

func newFakeRHSM() *fakeRHSM { return &fakeRHSM{} }

func (f *fakeRHSM) setIntercept(fn func(w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.intercept = fn
}

func (f *fakeRHSM) recorded() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// registrations are the org's accounts as the stand-in holds them.
func (f *fakeRHSM) registrations(org string) []Account {
	var out []Account
	for _, a := range f.server().Registrations()[org] {
		out = append(out, Account{ID: a.ID, Nickname: a.Nickname, SourceID: a.SourceID, Verified: a.Verified})
	}
	slices.SortFunc(out, func(a, b Account) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (f *fakeRHSM) server() *standin.Server {
	f.once.Do(func() {
		f.standin = standin.New(standin.Options{AuthHeader: f.authHeader, AuthValue: f.authValue, BearerToken: f.bearerToken})
	})
	return f.standin
}

func (f *fakeRHSM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
	intercept := f.intercept
	f.mu.Unlock()
	if intercept != nil && intercept(w, r) {
		return
	}
	s := f.server()
	s.SetSameOrgReregisterSucceeds(f.sameOrgOK)
	s.ServeHTTP(w, r)
}

// fakeError answers as RHSM's error body does, for a test's own interception.
func fakeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(standin.ErrorBody{Error: standin.ErrorDetails{Code: status, Message: msg}})
}
