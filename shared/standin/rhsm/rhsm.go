// Package rhsm is a local stand-in for the RHSM Cloud Access API
// (docs/contract.md, "RHSM Cloud Access API"). It keeps AWS account registrations per org, answers the listing
// endpoint so tests can see what was registered, records every call, can
// require a credential and can be made to misbehave through faults.
//
// Routes, under the configurable prefix (default /management/v1):
//
//	POST   {prefix}/cloud_access_providers/AWS/accounts          register accounts
//	DELETE {prefix}/cloud_access_providers/accounts?sourceID=<id> remove a source's accounts
//	GET    {prefix}/cloud_access_providers/enabled               list the org's accounts
//
// and, at the root, never faulted nor authenticated:
//
//	GET  /_calls          every recorded call (JSON)
//	GET  /_registrations  registrations per org (JSON)
//	POST /_reset          forget registrations, calls and the active fault
//	POST/DELETE /_faults  set or clear a fault (see package faults)
package rhsm

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/standin/httpstatus"
)

// DefaultPrefix is the public base path of the RHSM management API.
const DefaultPrefix = "/management/v1"

// OrgHeader carries the org id of the tenant a request acts for.
const OrgHeader = "X-RhsmApi-AccountID"

// Admin paths (at the root, outside the prefix).
const (
	CallsPath         = "/_calls"
	RegistrationsPath = "/_registrations"
	ResetPath         = "/_reset"
)

// Route paths relative to the prefix.
const (
	registerPath = "/cloud_access_providers/AWS/accounts"
	removePath   = "/cloud_access_providers/accounts"
	enabledPath  = "/cloud_access_providers/enabled"
	providerPfx  = "/cloud_access_providers/"
)

// DefaultMaxCalls bounds the call log when Options.MaxCalls is 0.
const DefaultMaxCalls = 10000

// maxBody bounds a request body; maxAccounts is the real API's batch limit.
const (
	maxBody     = 1 << 20
	maxAccounts = 100
)

var awsAccountRE = regexp.MustCompile(`^[0-9]{12}$`)

// Options configures a Server. The zero value is a usable stand-in.
type Options struct {
	// Prefix is the base path of the API routes; "" means DefaultPrefix and
	// "/" means none.
	Prefix string
	// SameOrgReregisterSucceeds makes a registration of an account the same
	// org already holds answer 204 (and record the new source id) instead of
	// 409. The real API's behaviour is unknown; 409 is the default.
	SameOrgReregisterSucceeds bool
	// AuthHeader and AuthValue, when both set, must be carried by every API
	// request (401 otherwise).
	AuthHeader string
	AuthValue  string
	// BearerToken, when set, must be carried as "Authorization: Bearer ..."
	// by every API request (401 otherwise).
	BearerToken string
	// MaxCalls bounds the call log (oldest calls are dropped); 0 means
	// DefaultMaxCalls, a negative value means unbounded.
	MaxCalls int
	// Logger logs one line per API call (never headers or credentials);
	// nil logs nothing.
	Logger logrus.FieldLogger
	// Now is the clock for call times; nil means time.Now.
	Now func() time.Time
}

// Account is one registered AWS account, as listed by the enabled endpoint.
type Account struct {
	ID       string `json:"id"`
	Nickname string `json:"nickname"`
	SourceID string `json:"sourceId"`
	Verified bool   `json:"verified"`
}

// Call is one recorded API request. AccountID holds the account ids of a
// registration request, comma-separated when there are several. Status is
// what the stand-in answered (0: the client went away before any answer).
type Call struct {
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Org       string    `json:"org"`
	SourceID  string    `json:"source_id"`
	AccountID string    `json:"account_id"`
	Status    int       `json:"status"`
	Time      time.Time `json:"time"`
}

type registration struct {
	org string
	Account
}

// Server is the stand-in. It is an http.Handler and safe for concurrent use.
type Server struct {
	prefix   string
	opts     Options
	injector *faults.Injector
	api      http.Handler

	mu            sync.Mutex
	sameOrgOK     bool
	registrations map[string]registration // by AWS account id (ownership is global)
	calls         []Call
}

// New returns a stand-in configured by opts.
func New(opts Options) *Server {
	s := &Server{
		prefix:        normalizePrefix(opts.Prefix),
		opts:          opts,
		sameOrgOK:     opts.SameOrgReregisterSucceeds,
		registrations: map[string]registration{},
	}
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	if s.opts.MaxCalls == 0 {
		s.opts.MaxCalls = DefaultMaxCalls
	}
	s.injector = faults.New(writeFault)
	s.api = s.record(s.injector.Wrap(http.HandlerFunc(s.serveAPI)))
	return s
}

func normalizePrefix(p string) string {
	switch p {
	case "":
		return DefaultPrefix
	case "/":
		return ""
	}
	return "/" + strings.Trim(p, "/")
}

// Prefix is the base path the API routes are served under.
func (s *Server) Prefix() string { return s.prefix }

// Faults is the fault injector applied to API requests.
func (s *Server) Faults() *faults.Injector { return s.injector }

// SetSameOrgReregisterSucceeds changes Options.SameOrgReregisterSucceeds.
func (s *Server) SetSameOrgReregisterSucceeds(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sameOrgOK = ok
}

// Calls returns a copy of the recorded calls, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Registrations returns a snapshot of the registered accounts per org, each
// list ordered by account id. Orgs without accounts are absent.
func (s *Server) Registrations() map[string][]Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Account{}
	for _, r := range s.registrations {
		out[r.org] = append(out[r.org], r.Account)
	}
	for _, accts := range out {
		sortAccounts(accts)
	}
	return out
}

// Reset forgets every registration and recorded call and clears the active
// fault. Options (and SetSameOrgReregisterSucceeds) are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	s.registrations = map[string]registration{}
	s.calls = nil
	s.mu.Unlock()
	s.injector.Clear()
}

// ServeHTTP serves the API routes and the admin paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case faults.AdminPath:
		s.api.ServeHTTP(w, r) // the injector serves its own admin path
	case CallsPath:
		if onlyMethod(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, s.Calls())
		}
	case RegistrationsPath:
		if onlyMethod(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, s.Registrations())
		}
	case ResetPath:
		if onlyMethod(w, r, http.MethodPost) {
			s.Reset()
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		s.api.ServeHTTP(w, r)
	}
}

// callKey is the context key of the *Call being recorded.
type callKey struct{}

// record logs every API request, faulted ones included, as a Call.
func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == faults.AdminPath {
			next.ServeHTTP(w, r)
			return
		}
		c := &Call{
			Method:   r.Method,
			Path:     r.URL.Path,
			Org:      strings.TrimSpace(r.Header.Get(OrgHeader)),
			SourceID: r.URL.Query().Get("sourceID"),
			Time:     s.opts.Now(),
		}
		rec := &httpstatus.Recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
		c.Status = rec.Status
		s.mu.Lock()
		s.calls = append(s.calls, *c)
		if limit := s.opts.MaxCalls; limit > 0 && len(s.calls) > limit {
			s.calls = slices.Delete(s.calls, 0, len(s.calls)-limit)
		}
		s.mu.Unlock()
		if s.opts.Logger != nil {
			s.opts.Logger.WithFields(logrus.Fields{
				"method": c.Method, "path": c.Path, "org": c.Org,
				"source_id": c.SourceID, "account_id": c.AccountID, "status": c.Status,
			}).Info("rhsm stand-in call")
		}
	})
}

func callOf(r *http.Request) *Call {
	if c, ok := r.Context().Value(callKey{}).(*Call); ok {
		return c
	}
	return &Call{}
}

// serveAPI routes an API request (after faults).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, s.prefix)
	if !ok || !strings.HasPrefix(rest, "/") {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if !s.authorized(r) {
		if s.opts.BearerToken != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rhsm"`)
		}
		writeError(w, http.StatusUnauthorized, "missing or invalid credential")
		return
	}
	switch {
	case rest == registerPath:
		if onlyMethod(w, r, http.MethodPost) {
			s.register(w, r)
		}
	case rest == removePath:
		if onlyMethod(w, r, http.MethodDelete) {
			s.remove(w, r)
		}
	case rest == enabledPath:
		if onlyMethod(w, r, http.MethodGet) {
			s.enabled(w, r)
		}
	case strings.HasPrefix(rest, providerPfx) && strings.HasSuffix(rest, "/accounts") &&
		strings.Count(rest, "/") == 3:
		writeError(w, http.StatusBadRequest, "unsupported cloud access provider")
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

// authorized checks the configured credential(s) in constant time.
func (s *Server) authorized(r *http.Request) bool {
	ok := true
	if s.opts.AuthHeader != "" && s.opts.AuthValue != "" {
		ok = equal(r.Header.Get(s.opts.AuthHeader), s.opts.AuthValue) && ok
	}
	if s.opts.BearerToken != "" {
		got := r.Header.Get("Authorization")
		scheme, token, found := strings.Cut(got, " ")
		ok = found && strings.EqualFold(scheme, "Bearer") &&
			equal(strings.TrimSpace(token), s.opts.BearerToken) && ok
	}
	return ok
}

func equal(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// org returns the request's org, answering 400 when there is none.
func org(w http.ResponseWriter, r *http.Request) (string, bool) {
	o := strings.TrimSpace(r.Header.Get(OrgHeader))
	if o == "" {
		writeError(w, http.StatusBadRequest, OrgHeader+" header is required")
		return "", false
	}
	return o, true
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	orgID, ok := org(w, r)
	if !ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	accts, err := decodeAccounts(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ids := make([]string, 0, len(accts))
	for _, a := range accts {
		ids = append(ids, a.ID)
	}
	c := callOf(r)
	c.AccountID = strings.Join(ids, ",")
	if len(accts) > 0 {
		c.SourceID = accts[0].SourceID
	}
	switch {
	case len(accts) == 0:
		writeError(w, http.StatusBadRequest, "at least one account is required")
		return
	case len(accts) > maxAccounts:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("at most %d accounts per request", maxAccounts))
		return
	}
	seen := map[string]bool{}
	for _, a := range accts {
		switch {
		case !awsAccountRE.MatchString(a.ID):
			writeError(w, http.StatusBadRequest, "account id must be 12 digits")
			return
		case strings.TrimSpace(a.SourceID) == "":
			writeError(w, http.StatusBadRequest, "sourceId is required")
			return
		case seen[a.ID]:
			writeError(w, http.StatusBadRequest, "duplicate account id in request")
			return
		}
		seen[a.ID] = true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// All or nothing: check every account before storing any.
	for _, a := range accts {
		cur, taken := s.registrations[a.ID]
		switch {
		case !taken:
		case cur.org != orgID:
			writeError(w, http.StatusConflict, "account "+a.ID+" is already registered by another organization")
			return
		case !s.sameOrgOK:
			writeError(w, http.StatusConflict, "account "+a.ID+" is already registered")
			return
		}
	}
	for _, a := range accts {
		s.registrations[a.ID] = registration{org: orgID, Account: a}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	orgID, ok := org(w, r)
	if !ok {
		return
	}
	sourceID := r.URL.Query().Get("sourceID")
	if strings.TrimSpace(sourceID) == "" {
		writeError(w, http.StatusBadRequest, "sourceID query parameter is required")
		return
	}
	s.mu.Lock()
	var removed []string
	for id, reg := range s.registrations {
		if reg.org == orgID && reg.SourceID == sourceID {
			delete(s.registrations, id)
			removed = append(removed, id)
		}
	}
	s.mu.Unlock()
	slices.Sort(removed)
	callOf(r).AccountID = strings.Join(removed, ",")
	if len(removed) == 0 {
		writeError(w, http.StatusNotFound, "no accounts registered for this source")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// accountFields are the exact (case-sensitive) field names of a registration.
var accountFields = map[string]bool{"id": true, "nickname": true, "verified": true, "sourceId": true}

// decodeAccounts reads a registration body strictly: one JSON array of
// objects whose field names match exactly (encoding/json alone would accept
// "sourceID" for "sourceId").
func decodeAccounts(body io.Reader) ([]Account, error) {
	dec := json.NewDecoder(body)
	var raw []map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, errors.New("body must be a JSON array of accounts")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("body must hold a single JSON array")
	}
	accts := make([]Account, 0, len(raw))
	for _, obj := range raw {
		for k := range obj {
			if !accountFields[k] {
				return nil, fmt.Errorf("unknown account field %q", k)
			}
		}
		b, _ := json.Marshal(obj)
		var a Account
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, errors.New("account fields have the wrong type")
		}
		accts = append(accts, a)
	}
	return accts, nil
}

type provider struct {
	ShortName string    `json:"shortName"`
	Accounts  []Account `json:"accounts"`
}

func (s *Server) enabled(w http.ResponseWriter, r *http.Request) {
	orgID, ok := org(w, r)
	if !ok {
		return
	}
	accts := s.Registrations()[orgID]
	body := []provider{}
	if len(accts) > 0 {
		body = append(body, provider{ShortName: "AWS", Accounts: accts})
	}
	writeJSON(w, http.StatusOK, map[string][]provider{"body": body})
}

func sortAccounts(a []Account) {
	slices.SortFunc(a, func(x, y Account) int { return strings.Compare(x.ID, y.ID) })
}

// onlyMethod answers 405 unless r uses method.
func onlyMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	return false
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error ErrorDetails `json:"error"`
}

// ErrorDetails is the error object of an ErrorBody.
type ErrorDetails struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorBody{Error: ErrorDetails{Code: status, Message: msg}})
}

// writeFault is the faults.Writer: an injected failure looks like any other
// error answer.
func writeFault(w http.ResponseWriter, status int, code string) {
	msg := code
	if msg == "" {
		msg = http.StatusText(status)
	}
	if msg == "" {
		msg = "injected fault"
	}
	writeError(w, status, msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":500,"message":"encoding failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
