// Package statusapi is the operators' and support's view of Cloudoreg,
// served on the processor's private port: a source's last outcome and what
// RHSM holds for it, the dead letters (list, show, replay, purge), the parked
// retries, and a reconcile on demand. openapi.json (served at OpenAPIPath) is
// its contract; a test holds the handlers to it.
//
// The handlers know only the small interfaces below, so they neither depend
// on how the worker stores parked retries and dead letters nor on NATS.
package statusapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Prefix is where every route of version 1 lives.
const Prefix = "/api/cloudoreg/v1"

// OpenAPIPath serves the OpenAPI document.
const OpenAPIPath = Prefix + "/openapi.json"

// Paging limits of the dead-letter list.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI is the API's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// ErrNotFound is returned by the readers for what does not exist.
var ErrNotFound = errors.New("not found")

// ErrNotReplayable means a dead letter is no work message (it would only be
// dead-lettered again).
var ErrNotReplayable = errors.New("the dead letter is not a valid work message")

// Outcome is a source's last recorded outcome.
type Outcome struct {
	OrgID         string
	State         string
	Code          string
	Reason        string
	ApplicationID string
	AccountID     string
	Attempts      int
	EventType     string
	Origin        string
	Time          time.Time
}

// ParkedRetry is a source's retry scheduled after transient failures.
type ParkedRetry struct {
	SourceID     string
	OrgID        string
	EventType    string
	Attempts     int
	Due          time.Time
	FirstFailure time.Time
}

// Registration is one AWS account RHSM holds for a source.
type Registration struct {
	AccountID string
	Verified  bool
}

// DeadLetter is one message of the dead-letter stream.
type DeadLetter struct {
	Seq        uint64
	SourceID   string
	OrgID      string
	Reason     string
	Detail     string
	Deliveries int
	Time       time.Time
	EventType  string
	Origin     string
	WorkSeq    uint64
}

// Replayed is what a replay stored in the work stream.
type Replayed struct {
	WorkSeq   uint64
	Duplicate bool
}

// Outcomes reads the last outcome of a source (ErrNotFound: none recorded).
type Outcomes interface {
	Outcome(ctx context.Context, sourceID string) (Outcome, error)
}

// Parked lists parked retries and reads one (ErrNotFound: none).
type Parked interface {
	ParkedRetries(ctx context.Context) ([]ParkedRetry, error)
	ParkedRetry(ctx context.Context, sourceID string) (ParkedRetry, error)
}

// Registrations reads what RHSM holds for a source of an org now.
type Registrations interface {
	Registrations(ctx context.Context, orgID, sourceID string) ([]Registration, error)
}

// DeadLetters reads, replays and purges dead letters. List returns up to
// limit letters after sequence after, oldest first.
type DeadLetters interface {
	DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error)
	DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error)
	// Replay republishes the letter to its work subject and deletes it
	// only once the publish was stored.
	Replay(ctx context.Context, seq uint64) (Replayed, error)
	// Purge deletes the letters stored before cutoff and says how many.
	Purge(ctx context.Context, cutoff time.Time) (int, error)
}

// Reconciles enqueues a reconcile of a source under its org.
type Reconciles interface {
	Reconcile(ctx context.Context, sourceID, orgID string) error
}

// API serves the routes. AdminToken empty turns admin access off.
type API struct {
	Outcomes      Outcomes
	Parked        Parked
	Registrations Registrations
	DeadLetters   DeadLetters
	Reconciles    Reconciles
	AdminToken    string
	Log           *logrus.Entry
	// Now is the clock of purges (time.Now when nil).
	Now func() time.Time
}

// Mux is where the routes are registered (an *http.ServeMux).
type Mux interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Register adds the routes to mux.
func (a *API) Register(mux Mux) {
	mux.HandleFunc("GET "+OpenAPIPath, a.openAPI)
	a.route(mux, "GET "+Prefix+"/sources/{id}", anyCaller, a.source)
	a.route(mux, "POST "+Prefix+"/sources/{id}/reconcile", adminOnly, a.reconcile)
	a.route(mux, "GET "+Prefix+"/dead-letters", adminOnly, a.deadLetters)
	a.route(mux, "DELETE "+Prefix+"/dead-letters", adminOnly, a.purge)
	a.route(mux, "GET "+Prefix+"/dead-letters/{seq}", adminOnly, a.deadLetter)
	a.route(mux, "POST "+Prefix+"/dead-letters/{seq}/replay", adminOnly, a.replay)
	a.route(mux, "GET "+Prefix+"/parked", adminOnly, a.parked)
}

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

type handler func(w http.ResponseWriter, r *http.Request, c caller) (int, any)

// route wraps h with authorization, the JSON answer and the access log.
func (a *API) route(mux Mux, pattern string, need access, h handler) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		c, code, msg := authorize(r, a.AdminToken, need)
		var body any = errorBody(msg)
		if code == http.StatusOK {
			code, body = h(w, r, c)
		}
		writeJSON(w, code, body)
		entry := a.Log.WithFields(logrus.Fields{
			"route": pattern, "status": code, "who": c.who(), "duration_ms": time.Since(started).Milliseconds(),
		})
		if id := r.PathValue("id"); id != "" {
			entry = entry.WithField("source_id", id)
		}
		if seq := r.PathValue("seq"); seq != "" {
			entry = entry.WithField("dead_letter_seq", seq)
		}
		entry.Info("status API access")
	})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func errorBody(msg string) ErrorResponse { return ErrorResponse{Error: msg} }

func fail(code int, msg string) (int, any) { return code, errorBody(msg) }

// backendFailed answers for a dependency (NATS, RHSM) that failed; the
// error names the operation, never a credential.
func (a *API) backendFailed(r *http.Request, err error) (int, any) {
	a.Log.WithError(err).WithField("route", r.Pattern).Warn("status API: a dependency failed")
	return fail(http.StatusServiceUnavailable, "a dependency failed, try again: "+err.Error())
}

var errNoSource = errorBody("no such source")

// source answers GET /sources/{id}. An org sees only its own sources: one
// of another org, or one whose org is not known, is "not found" like a
// source that does not exist, so nothing tells them apart.
func (a *API) source(_ http.ResponseWriter, r *http.Request, c caller) (int, any) {
	id := r.PathValue("id")
	if !event.ValidID(id) {
		return fail(http.StatusBadRequest, "the source id must be a Sources id (digits)")
	}
	ctx := r.Context()
	out, err := a.Outcomes.Outcome(ctx, id)
	hasOutcome := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return a.backendFailed(r, err)
	}
	parked, err := a.Parked.ParkedRetry(ctx, id)
	hasParked := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return a.backendFailed(r, err)
	}
	org := out.OrgID
	if org == "" {
		org = parked.OrgID
	}
	if (!hasOutcome && !hasParked) || !c.sees(org) {
		return http.StatusNotFound, errNoSource
	}
	resp := SourceResponse{SourceID: id, OrgID: org}
	if hasOutcome {
		resp.Outcome = outcomeJSON(out)
	}
	if hasParked {
		resp.ParkedRetry = &ParkedRetryResponse{Due: parked.Due, Attempts: parked.Attempts, FirstFailure: parked.FirstFailure}
	}
	resp.RHSM = a.rhsm(ctx, org, id)
	return http.StatusOK, resp
}

// rhsm asks RHSM now; its failure is part of the answer, not a failure of
// the request: the recorded outcome is still worth reading.
func (a *API) rhsm(ctx context.Context, org, id string) RHSMResponse {
	if org == "" {
		return RHSMResponse{Registrations: []RegistrationResponse{}, Error: "the source's org is not known, so RHSM cannot be asked"}
	}
	regs, err := a.Registrations.Registrations(ctx, org, id)
	if err != nil {
		return RHSMResponse{Registrations: []RegistrationResponse{}, Error: err.Error()}
	}
	out := RHSMResponse{Registrations: []RegistrationResponse{}}
	for _, g := range regs {
		out.Registrations = append(out.Registrations, RegistrationResponse(g))
	}
	return out
}

func outcomeJSON(o Outcome) *OutcomeResponse {
	r := &OutcomeResponse{
		State: o.State, Code: o.Code, Reason: o.Reason, ApplicationID: o.ApplicationID, AccountID: o.AccountID,
		Attempts: o.Attempts, EventType: o.EventType, Origin: o.Origin, Time: o.Time,
	}
	if o.Code != "" {
		r.CustomerText = status.Code(o.Code).Text()
	}
	return r
}

// reconcile answers POST /sources/{id}/reconcile: re-verify now, under the
// org the source was last seen with (or the org_id parameter, for a source
// whose outcome has expired).
func (a *API) reconcile(_ http.ResponseWriter, r *http.Request, _ caller) (int, any) {
	id := r.PathValue("id")
	if !event.ValidID(id) {
		return fail(http.StatusBadRequest, "the source id must be a Sources id (digits)")
	}
	org := r.URL.Query().Get("org_id")
	if org == "" {
		out, err := a.Outcomes.Outcome(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			return fail(http.StatusNotFound, "no outcome recorded for this source: name its org with ?org_id=")
		case err != nil:
			return a.backendFailed(r, err)
		}
		org = out.OrgID
	}
	if org == "" {
		return fail(http.StatusNotFound, "the source's org is not recorded: name it with ?org_id=")
	}
	if err := a.Reconciles.Reconcile(r.Context(), id, org); err != nil {
		return a.backendFailed(r, err)
	}
	return http.StatusAccepted, ReconcileResponse{SourceID: id, OrgID: org}
}

func (a *API) deadLetters(_ http.ResponseWriter, r *http.Request, _ caller) (int, any) {
	after, limit, err := paging(r)
	if err != nil {
		return fail(http.StatusBadRequest, err.Error())
	}
	list, err := a.DeadLetters.DeadLetters(r.Context(), after, limit)
	if err != nil {
		return a.backendFailed(r, err)
	}
	resp := DeadLettersResponse{DeadLetters: []DeadLetterResponse{}}
	for _, d := range list {
		resp.DeadLetters = append(resp.DeadLetters, deadLetterOf(d, false))
	}
	if len(list) == limit {
		resp.NextAfter = &list[len(list)-1].Seq
	}
	return http.StatusOK, resp
}

// paging reads ?after=<seq>&limit=<n>.
func paging(r *http.Request) (after uint64, limit int, err error) {
	q := r.URL.Query()
	limit = DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return 0, 0, errors.New("limit must be a number from 1 to " + strconv.Itoa(MaxLimit))
		}
		limit = n
	}
	if v := q.Get("after"); v != "" {
		after, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, errors.New("after must be a dead letter's sequence number")
		}
	}
	return after, limit, nil
}

func seqOf(r *http.Request) (uint64, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	return seq, err == nil && seq > 0
}

func (a *API) deadLetter(_ http.ResponseWriter, r *http.Request, _ caller) (int, any) {
	seq, ok := seqOf(r)
	if !ok {
		return fail(http.StatusBadRequest, "the sequence must be a positive number")
	}
	d, err := a.DeadLetters.DeadLetter(r.Context(), seq)
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(http.StatusNotFound, "no such dead letter")
	case err != nil:
		return a.backendFailed(r, err)
	}
	return http.StatusOK, deadLetterOf(d, true)
}

func (a *API) replay(_ http.ResponseWriter, r *http.Request, _ caller) (int, any) {
	seq, ok := seqOf(r)
	if !ok {
		return fail(http.StatusBadRequest, "the sequence must be a positive number")
	}
	res, err := a.DeadLetters.Replay(r.Context(), seq)
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(http.StatusNotFound, "no such dead letter")
	case errors.Is(err, ErrNotReplayable):
		return fail(http.StatusUnprocessableEntity, err.Error()+"; inspect it and purge it")
	case err != nil:
		return a.backendFailed(r, err)
	}
	return http.StatusOK, ReplayResponse{Seq: seq, WorkSeq: res.WorkSeq, Duplicate: res.Duplicate}
}

func (a *API) purge(_ http.ResponseWriter, r *http.Request, _ caller) (int, any) {
	d, err := time.ParseDuration(r.URL.Query().Get("older_than"))
	if err != nil || d < 0 {
		return fail(http.StatusBadRequest, "older_than must be a non-negative duration such as 72h")
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	n, err := a.DeadLetters.Purge(r.Context(), now().Add(-d))
	if err != nil {
		return a.backendFailed(r, err)
	}
	return http.StatusOK, PurgeResponse{Purged: n}
}

func (a *API) parked(_ http.ResponseWriter, r *http.Request, _ caller) (int, any) {
	list, err := a.Parked.ParkedRetries(r.Context())
	if err != nil {
		return a.backendFailed(r, err)
	}
	resp := ParkedResponse{Parked: []ParkedEntry{}}
	for _, p := range list {
		resp.Parked = append(resp.Parked, ParkedEntry(p))
	}
	return http.StatusOK, resp
}

func deadLetterOf(d DeadLetter, detail bool) DeadLetterResponse {
	j := DeadLetterResponse{
		Seq: d.Seq, SourceID: d.SourceID, OrgID: d.OrgID, Reason: d.Reason, Deliveries: d.Deliveries,
		Time: d.Time, EventType: d.EventType,
	}
	if detail {
		j.Detail, j.Origin, j.WorkSeq = &d.Detail, &d.Origin, &d.WorkSeq
	}
	return j
}
