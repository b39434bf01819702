// Package availability serves the availability check Sources calls
// (docs/contract.md, "Availability check"): it answers at once and enqueues
// a re-verification of the source, whose outcome reaches Sources through the
// status topic.
package availability

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

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

// Enqueuer publishes a work message.
type Enqueuer interface {
	Enqueue(ctx context.Context, m work.Message) error
}

// Handler serves the availability check.
type Handler struct {
	Work    Enqueuer
	Log     *logrus.Entry
	Counted func(outcome string)
}

type request struct {
	SourceID json.RawMessage `json:"source_id"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	var req request
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if json.Unmarshal(body, &req) != nil {
		h.fail(w, http.StatusBadRequest, "bad_request", "body must be JSON with source_id")
		return
	}
	sourceID, ok := normaliseID(req.SourceID)
	if !ok {
		h.fail(w, http.StatusBadRequest, "bad_request", "source_id is required and must be a Sources id")
		return
	}
	identity := r.Header.Get(event.HeaderIdentity)
	tenant, err := event.ResolveTenant(r.Header.Get(event.HeaderOrgID), r.Header.Get(event.HeaderAccount), identity)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "no_tenant", "a tenant header (x-rh-sources-org-id, x-rh-sources-account-number or x-rh-identity) is required")
		return
	}
	m := work.Message{Kind: work.KindCheck, SourceID: sourceID, Tenant: tenant, Identity: identity, Origin: "check"}
	if err := h.Work.Enqueue(r.Context(), m); err != nil {
		h.Log.WithError(err).WithField("source_id", sourceID).Warn("availability check could not be enqueued")
		h.fail(w, http.StatusServiceUnavailable, "unavailable", "the check could not be queued; try again")
		return
	}
	h.count("accepted")
	h.Log.WithFields(logrus.Fields{"source_id": sourceID, "org_id": tenant.OrgID}).Info("availability check queued")
	w.WriteHeader(http.StatusAccepted)
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

// normaliseID accepts the id as a JSON string (as Sources sends it) or number.
func normaliseID(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
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
