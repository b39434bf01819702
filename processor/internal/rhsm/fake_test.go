package rhsm

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// fakeRHSM is a small RHSM Cloud Access API for the client's tests. It mirrors
// the wire behaviour of the Cloudoreg RHSM stand-in
// (scripts/internal/standin/rhsm), which this module cannot import: Go's
// internal-package rule keeps scripts/internal/... private to the scripts
// module. Ownership of an AWS account is global; re-registration by the same
// org answers 409 unless sameOrgOK; remove answers 404 when nothing matched.
type fakeRHSM struct {
	prefix      string
	authHeader  string
	authValue   string
	bearerToken string

	mu        sync.Mutex
	sameOrgOK bool
	regs      map[string]fakeReg // by AWS account id
	requests  []fakeRequest
	// intercept, when set, may answer a request itself (return true) before
	// authentication and routing, like an injected fault.
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

type fakeReg struct {
	org string
	Account
}

type fakeRequest struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

var twelveDigits = regexp.MustCompile(`^[0-9]{12}$`)

func newFakeRHSM() *fakeRHSM {
	return &fakeRHSM{prefix: "/management/v1", regs: map[string]fakeReg{}}
}

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

func (f *fakeRHSM) registrations(org string) []Account {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Account
	for _, r := range f.regs {
		if r.org == org {
			out = append(out, r.Account)
		}
	}
	slices.SortFunc(out, func(a, b Account) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func fakeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": status, "message": msg}})
}

func (f *fakeRHSM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
	intercept := f.intercept
	f.mu.Unlock()
	if intercept != nil && intercept(w, r) {
		return
	}

	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if f.authHeader != "" && !eq(r.Header.Get(f.authHeader), f.authValue) ||
		f.bearerToken != "" && !eq(r.Header.Get("Authorization"), "Bearer "+f.bearerToken) {
		fakeError(w, http.StatusUnauthorized, "missing or invalid credential")
		return
	}
	org := strings.TrimSpace(r.Header.Get(OrgHeader))
	if org == "" {
		fakeError(w, http.StatusBadRequest, OrgHeader+" header is required")
		return
	}
	rest, _ := strings.CutPrefix(r.URL.Path, f.prefix)
	switch {
	case r.Method == http.MethodPost && rest == registerPath:
		if r.Header.Get("Content-Type") != "application/json" {
			fakeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		var accts []Account
		if err := json.Unmarshal(body, &accts); err != nil || len(accts) == 0 {
			fakeError(w, http.StatusBadRequest, "body must be a JSON array of accounts")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, a := range accts {
			if !twelveDigits.MatchString(a.ID) || a.SourceID == "" {
				fakeError(w, http.StatusBadRequest, "account id must be 12 digits and sourceId set")
				return
			}
			if cur, ok := f.regs[a.ID]; ok && (cur.org != org || !f.sameOrgOK) {
				fakeError(w, http.StatusConflict, "account "+a.ID+" is already registered")
				return
			}
		}
		for _, a := range accts {
			f.regs[a.ID] = fakeReg{org, a}
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete && rest == removePath:
		source := r.URL.Query().Get("sourceID")
		if source == "" {
			fakeError(w, http.StatusBadRequest, "sourceID is required")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		n := 0
		for id, reg := range f.regs {
			if reg.org == org && reg.SourceID == source {
				delete(f.regs, id)
				n++
			}
		}
		if n == 0 {
			fakeError(w, http.StatusNotFound, "no accounts registered for this source")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && rest == enabledPath:
		type provider struct {
			ShortName string    `json:"shortName"`
			Accounts  []Account `json:"accounts"`
		}
		body := []provider{}
		if accts := f.registrations(org); len(accts) > 0 {
			body = append(body, provider{"AWS", accts})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string][]provider{"body": body})
	default:
		fakeError(w, http.StatusNotFound, "not found")
	}
}
