// Package availability serves the availability check Sources calls
// (docs/contract.md, "Availability check"): it answers at once and enqueues
// a re-verification of the source, whose outcome reaches Sources through the
// status topic.
// Checks of one source within a window coalesce into one.
package availability

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Paths where the check is served: the one Sources already calls
// (cloudigrade's) and Cloudoreg's own.
const (
	CloudigradePath = "/internal/api/cloudigrade/v1/availability_status"
	Path            = "/internal/api/cloudoreg/v1/availability_status"
)

// MaxBody bounds a request: Sources sends a few dozen bytes.
const MaxBody = 4 << 10

// Enqueuer publishes a work message; duplicate says the work stream already
// held its message id.
type Enqueuer interface {
	Enqueue(ctx context.Context, m work.Message) (duplicate bool, err error)
}

// Handler serves the availability check.
type Handler struct {
	Work    Enqueuer
	Log     *logrus.Entry
	Counted func(outcome string)
	// Window coalesces checks: all checks of a source within one window
	// share a message id, so at most one of them is queued.
	Window time.Duration
	Now    func() time.Time // the clock; time.Now when nil
}

// request is Sources' body, and nothing else.
type request struct {
	SourceID json.RawMessage `json:"source_id"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		h.fail(w, http.StatusBadRequest, "bad_request", "the body could not be read")
		return
	}
	if len(body) > MaxBody {
		h.fail(w, http.StatusRequestEntityTooLarge, "too_large", "the body is larger than "+strconv.Itoa(MaxBody)+" bytes")
		return
	}
	sourceID, ok := decode(body)
	if !ok {
		h.fail(w, http.StatusBadRequest, "bad_request", `body must be {"source_id":"<Sources id>"}`)
		return
	}
	identity := r.Header.Get(event.HeaderIdentity)
	tenant, err := event.ResolveTenant(r.Header.Get(event.HeaderOrgID), r.Header.Get(event.HeaderAccount), identity)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "no_tenant", "a tenant header (x-rh-sources-org-id, x-rh-sources-account-number or x-rh-identity) is required")
		return
	}
	m := work.Message{Kind: work.KindCheck, SourceID: sourceID, Tenant: tenant, Identity: identity, Origin: h.origin(sourceID)}
	duplicate, err := h.Work.Enqueue(r.Context(), m)
	if err != nil {
		h.Log.WithError(err).WithField("source_id", sourceID).Warn("availability check could not be enqueued")
		h.fail(w, http.StatusServiceUnavailable, "unavailable", "the check could not be queued; try again")
		return
	}
	log := h.Log.WithFields(logrus.Fields{"source_id": sourceID, "org_id": tenant.OrgID, "origin": m.Origin})
	if duplicate {
		h.count("coalesced")
		log.Info("availability check coalesced with one already queued")
	} else {
		h.count("accepted")
		log.Info("availability check queued")
	}
	w.WriteHeader(http.StatusAccepted)
}

// origin is the check's message id: one per source and window.
func (h *Handler) origin(sourceID string) string {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	slot := int64(0)
	if h.Window > 0 {
		slot = now().UnixNano() / int64(h.Window)
	}
	return "check/" + sourceID + "/" + strconv.FormatInt(slot, 10)
}

func (h *Handler) fail(w http.ResponseWriter, code int, outcome, msg string) {
	h.count(outcome)
	http.Error(w, msg, code)
}

func (h *Handler) count(outcome string) {
	if h.Counted != nil {
		h.Counted(outcome)
	}
}

// decode reads Sources' body: exactly one field, source_id, a JSON string
// (as Sources sends it) or number holding a Sources id.
func decode(body []byte) (string, bool) {
	var req request
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if d.Decode(&req) != nil || d.More() || req.SourceID == nil {
		return "", false
	}
	var s string
	if json.Unmarshal(req.SourceID, &s) != nil {
		var n json.Number
		if json.Unmarshal(req.SourceID, &n) != nil {
			return "", false
		}
		s = n.String()
	}
	return s, event.ValidID(s)
}

// Mux serves the check at both paths.
func Mux(h http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(CloudigradePath, h)
	mux.Handle(Path, h)
	return mux
}
