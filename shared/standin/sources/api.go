package sources

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/httpstatus"
)

// Path prefixes of the two APIs.
const (
	publicPrefix   = "/api/sources/v3.1"
	internalPrefix = "/internal/v2.0"
	defaultLimit   = 100
)

// apiError is an error with the HTTP status the real service answers with.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return e.detail }

func badRequest(detail string) error { return &apiError{http.StatusBadRequest, detail} }

func notFound(what string) error { return &apiError{http.StatusNotFound, what + " not found"} }

// writeError writes the real service's error document.
func writeError(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]any{
		"errors": []map[string]string{{"status": strconv.Itoa(status), "detail": detail}},
	})
}

func writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.detail)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Call is one REST request the stand-in answered, for tests.
type Call struct {
	Method        string    `json:"method"`
	Path          string    `json:"path"`
	Query         string    `json:"query,omitempty"`
	OrgID         string    `json:"org_id,omitempty"`
	AccountNumber string    `json:"account_number,omitempty"`
	Status        int       `json:"status"`
	Time          time.Time `json:"time"`
}

type callLog struct {
	mu    sync.Mutex
	calls []Call
}

func (l *callLog) add(c Call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *callLog) list() []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Call(nil), l.calls...)
}

// recordCalls logs every request that reaches the API, faulted ones
// included, so a test sees what its client really did.
func (s *Server) recordCalls(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &httpstatus.Recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		t, _ := event.ResolveTenant(r.Header.Get(event.HeaderOrgID), r.Header.Get(event.HeaderAccount), r.Header.Get(event.HeaderIdentity))
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		s.calls.add(Call{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			OrgID: t.OrgID, AccountNumber: t.AccountNumber,
			Status: rec.Status, Time: time.Now().UTC(),
		})
	})
}

// reqCtx is the tenant a request acts for and what its events forward.
type reqCtx struct {
	tenant *tenant
	fwd    forward
}

type tenantHandler func(w http.ResponseWriter, r *http.Request, rc reqCtx)

// tenanted resolves the tenant like the real tenancy middleware: the tenant
// headers, else the identity; no tenant is 401.
func (s *Server) tenanted(h tenantHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		identity := r.Header.Get(event.HeaderIdentity)
		t, err := event.ResolveTenant(r.Header.Get(event.HeaderOrgID), r.Header.Get(event.HeaderAccount), identity)
		if err != nil {
			writeError(w, http.StatusUnauthorized, "Unauthorized Action: Missing identity or tenant headers")
			return
		}
		if identity == "" {
			identity = generatedIdentity(t.OrgID, t.AccountNumber)
		}
		h(w, r, reqCtx{
			tenant: s.store.tenant(t.OrgID, t.AccountNumber),
			fwd:    forward{orgID: t.OrgID, account: t.AccountNumber, identity: identity},
		})
	}
}

// pskOK compares in constant time. An unset PSK authorises nothing.
func (s *Server) pskOK(r *http.Request) bool {
	got := r.Header.Get(event.HeaderPSK)
	return s.cfg.PSK != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.PSK)) == 1
}

// writer guards mutating public calls like the real permission check: a PSK,
// when sent, must be right; without one the identity is trusted (no RBAC
// here). It also serialises writes so events leave in the order of changes.
func (s *Server) writer(h tenantHandler) http.HandlerFunc {
	return s.tenanted(func(w http.ResponseWriter, r *http.Request, rc reqCtx) {
		if r.Header.Get(event.HeaderPSK) != "" && !s.pskOK(r) {
			writeError(w, http.StatusUnauthorized, "Unauthorized Action: Invalid PSK")
			return
		}
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		h(w, r, rc)
	})
}

// commit publishes the events of a change that is already visible over REST
// and then answers; a client that got its 2xx knows the events are in Kafka.
func (s *Server) commit(w http.ResponseWriter, rc reqCtx, evs []outEvent, status int, body any) {
	if err := s.publish(rc.fwd, evs...); err != nil {
		s.log.WithError(err).Error("sources stand-in: could not publish events")
		writeError(w, http.StatusInternalServerError, "change saved but events could not be published: "+err.Error())
		return
	}
	if body == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, body)
}

// publish must be called with writeMu held.
func (s *Server) publish(f forward, evs ...outEvent) error {
	if len(evs) == 0 {
		return nil
	}
	if s.pubClosed {
		return errors.New("the event producer is closed")
	}
	return s.pub.publish(f, evs...)
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	p := func(pattern string) string {
		method, path, _ := strings.Cut(pattern, " ")
		return method + " " + publicPrefix + path
	}

	mux.HandleFunc(p("POST /bulk_create"), s.writer(s.bulkCreate))

	mux.HandleFunc(p("GET /sources"), s.tenanted(s.listSources))
	mux.HandleFunc(p("POST /sources"), s.writer(s.createSource))
	mux.HandleFunc(p("GET /sources/{id}"), s.tenanted(s.getSource))
	mux.HandleFunc(p("DELETE /sources/{id}"), s.writer(s.deleteSource))
	mux.HandleFunc(p("GET /sources/{id}/applications"), s.tenanted(s.listSourceApplications))
	mux.HandleFunc(p("GET /sources/{id}/authentications"), s.tenanted(s.listSourceAuthentications))
	mux.HandleFunc(p("POST /sources/{id}/pause"), s.writer(s.pauseSource(true)))
	mux.HandleFunc(p("POST /sources/{id}/unpause"), s.writer(s.pauseSource(false)))
	mux.HandleFunc(p("POST /sources/{id}/check_availability"), s.tenanted(s.checkAvailability))

	mux.HandleFunc(p("GET /applications"), s.tenanted(s.listApplications))
	mux.HandleFunc(p("POST /applications"), s.writer(s.createApplication))
	mux.HandleFunc(p("GET /applications/{id}"), s.tenanted(s.getApplication))
	mux.HandleFunc(p("DELETE /applications/{id}"), s.writer(s.deleteApplication))
	mux.HandleFunc(p("GET /applications/{id}/authentications"), s.tenanted(s.listApplicationAuthentications))
	mux.HandleFunc(p("POST /applications/{id}/pause"), s.writer(s.pauseApplication(true)))
	mux.HandleFunc(p("POST /applications/{id}/unpause"), s.writer(s.pauseApplication(false)))

	mux.HandleFunc(p("GET /authentications"), s.tenanted(s.listAuthentications))
	mux.HandleFunc(p("POST /authentications"), s.writer(s.createAuthentication))
	mux.HandleFunc(p("GET /authentications/{id}"), s.tenanted(s.getAuthentication))
	mux.HandleFunc(p("PATCH /authentications/{id}"), s.writer(s.patchAuthentication))
	mux.HandleFunc(p("DELETE /authentications/{id}"), s.writer(s.deleteAuthentication))

	mux.HandleFunc(p("GET /application_authentications"), s.tenanted(s.listLinks))
	mux.HandleFunc(p("POST /application_authentications"), s.writer(s.createLink))
	mux.HandleFunc(p("GET /application_authentications/{id}"), s.tenanted(s.getLink))
	mux.HandleFunc(p("DELETE /application_authentications/{id}"), s.writer(s.deleteLink))

	// Types are global in the real service: no tenant needed.
	mux.HandleFunc(p("GET /application_types"), s.listApplicationTypes)
	mux.HandleFunc(p("GET /application_types/{id}"), s.getApplicationType)
	mux.HandleFunc(p("GET /source_types"), s.listSourceTypes)

	mux.HandleFunc("GET "+internalPrefix+"/authentications/{id}", s.internalGetAuthentication)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// pathID parses the {id} of a route; the real service answers 400 for an id
// that is not a number.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, badRequest("invalid id: " + r.PathValue("id"))
	}
	return id, nil
}

// flexID accepts an id as a JSON number or string, like the real service's
// *_id fields.
type flexID int64

func (f *flexID) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
	}
	if s == "null" || s == "" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid id %q", s)
	}
	*f = flexID(n)
	return nil
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: " + err.Error())
	}
	return nil
}

// REST representations. Every id is a string, times are RFC 3339.

func restTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func restTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := restTime(*t)
	return &s
}

func sourceJSON(v Source) map[string]any {
	return map[string]any{
		"id": idString(v.ID), "created_at": restTime(v.CreatedAt), "updated_at": restTime(v.UpdatedAt),
		"paused_at": restTimePtr(v.PausedAt), "name": v.Name, "uid": v.UID,
		"app_creation_workflow": v.AppCreationWorkflow, "availability_status": v.AvailabilityStatus,
		"last_checked_at": restTimePtr(v.LastCheckedAt), "last_available_at": restTimePtr(v.LastAvailableAt),
		"source_type_id": idString(v.SourceTypeID),
	}
}

func applicationJSON(v Application) map[string]any {
	return map[string]any{
		"id": idString(v.ID), "created_at": restTime(v.CreatedAt), "updated_at": restTime(v.UpdatedAt),
		"paused_at": restTimePtr(v.PausedAt), "availability_status": v.AvailabilityStatus,
		"availability_status_error": v.AvailabilityStatusError,
		"last_checked_at":           restTimePtr(v.LastCheckedAt), "last_available_at": restTimePtr(v.LastAvailableAt),
		"extra": v.Extra, "source_id": idString(v.SourceID), "application_type_id": idString(v.ApplicationTypeID),
	}
}

// authenticationJSON never includes the password; only the internal API adds
// it, on request.
func authenticationJSON(v Authentication) map[string]any {
	m := map[string]any{
		"id": idString(v.ID), "created_at": restTime(v.CreatedAt), "authtype": v.AuthType, "username": v.Username,
		"extra": v.Extra, "version": "", "resource_type": v.ResourceType, "resource_id": idString(v.ResourceID),
		"source_id": idString(v.SourceID),
	}
	if v.Name != "" {
		m["name"] = v.Name
	}
	return m
}

func linkJSON(v ApplicationAuthentication) map[string]any {
	return map[string]any{
		"id": idString(v.ID), "created_at": restTime(v.CreatedAt), "updated_at": restTime(v.UpdatedAt),
		"application_id": idString(v.ApplicationID), "authentication_id": idString(v.AuthenticationID),
	}
}

func applicationTypeJSON(v ApplicationType) map[string]any {
	return map[string]any{
		"id": idString(v.ID), "name": v.Name, "display_name": v.DisplayName,
		"dependent_applications": []string{}, "supported_source_types": v.SupportedSourceTypes,
		"supported_authentication_types": v.SupportedAuthTypes,
	}
}

func sourceTypeJSON(v SourceType) map[string]any {
	return map[string]any{"id": idString(v.ID), "name": v.Name, "product_name": v.ProductName, "vendor": v.Vendor}
}

// writeCollection applies filter[field]=value (or filter[field][eq]=value)
// on the rendered fields, then limit/offset, and writes the real collection
// document.
func writeCollection(w http.ResponseWriter, r *http.Request, items []map[string]any) {
	q := r.URL.Query()
	limit, offset := defaultLimit, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "invalid limit")
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid offset")
			return
		}
		offset = n
	}
	filtered, err := applyFilters(q, items)
	if err != nil {
		writeErr(w, err)
		return
	}
	count := len(filtered)
	page := []map[string]any{}
	if offset < count {
		page = filtered[offset:min(count, offset+limit)]
	}
	lastOffset := 0
	if count > 0 {
		lastOffset = (count - 1) / limit * limit
	}
	link := func(off int) string {
		return fmt.Sprintf("%s?limit=%d&offset=%d", r.URL.Path, limit, off)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"meta":  map[string]int{"count": count, "limit": limit, "offset": offset},
		"links": map[string]string{"first": link(0), "last": link(lastOffset)},
		"data":  page,
	})
}

func applyFilters(q url.Values, items []map[string]any) ([]map[string]any, error) {
	type filter struct{ field, value string }
	var filters []filter
	for key, vals := range q {
		if !strings.HasPrefix(key, "filter[") {
			continue
		}
		field, op, _ := strings.Cut(strings.TrimPrefix(key, "filter["), "]")
		if op != "" && op != "[eq]" {
			return nil, badRequest("unsupported filter operation in " + key)
		}
		for _, v := range vals {
			filters = append(filters, filter{field, v})
		}
	}
	sort.Slice(filters, func(i, j int) bool { return filters[i].field < filters[j].field })
	out := []map[string]any{}
	for _, it := range items {
		keep := true
		for _, f := range filters {
			v, ok := it[f.field]
			if !ok {
				return nil, badRequest("invalid filter field: " + f.field)
			}
			if fmt.Sprint(deref(v)) != f.value {
				keep = false
			}
		}
		if keep {
			out = append(out, it)
		}
	}
	return out, nil
}

func deref(v any) any {
	if p, ok := v.(*string); ok {
		if p == nil {
			return ""
		}
		return *p
	}
	return v
}
