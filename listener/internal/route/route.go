// Package route decides what the listener does with one Kafka message of the
// Sources event stream: ignore it, skip it as unprocessable, or route it to
// a source's work subject. It is pure: no I/O, no Kafka types.
package route

import (
	"errors"
	"unicode/utf8"

	"github.com/cloudoreg/cloudoreg/shared/event"
)

// Action is what to do with a message.
type Action int

const (
	// Ignore is an event type Cloudoreg does not act on. No call is made.
	Ignore Action = iota
	// Skip is a routed type that cannot be processed (poison input).
	Skip
	// Route publishes to the work stream once the source id is known.
	Route
)

// Reasons for Skip, used as metric labels and log fields.
const (
	ReasonTooLarge         = "too_large"          // the value exceeds LISTENER_MAX_EVENT_BYTES
	ReasonIdentityTooLarge = "identity_too_large" // x-rh-identity exceeds event.MaxIdentityBytes
	ReasonBadPayload       = "bad_payload"
	ReasonBadID            = "bad_id"
	ReasonNoTenant         = "no_tenant"
	ReasonBadTenant        = "bad_tenant" // an org id or account number Sources cannot hold
	ReasonBadIdentity      = "bad_identity"
)

// Reasons decided later in the pipeline, by the listener's transports.
const (
	// ReasonExceedsNATSLimits: the work message would exceed what the NATS
	// server takes (its max payload, JetStream's header limit).
	ReasonExceedsNATSLimits = "exceeds_nats_limits"
	// ReasonRefusedByNATS: JetStream refused the publish for a reason that
	// holds on every retry (the message itself).
	ReasonRefusedByNATS = "refused_by_nats"
	// ReasonRefusedBySources: Sources refused the lookup of the source id,
	// or answered something unusable, and would again.
	ReasonRefusedBySources = "refused_by_sources"
	// ReasonUnresolvable: the application is gone from Sources and was
	// never indexed.
	ReasonUnresolvable = "unresolvable"
)

// Decision is the outcome for one message.
type Decision struct {
	Action    Action
	Reason    string // why it was skipped
	EventType string // as read, for logs; see MetricType for labels
	Event     event.Event
	Tenant    event.Tenant
	Identity  string // raw x-rh-identity: copied onward, never logged
}

// Headers are a message's headers by name. Empty values count as absent.
type Headers map[string]string

// read are the headers Decide reads; no other header is kept, so nothing
// of a message beyond them can travel on.
var read = map[string]bool{event.HeaderEventType: true, event.HeaderOrgID: true, event.HeaderAccount: true, event.HeaderIdentity: true}

// FromPairs builds Headers from raw key/value pairs, keeping the first
// non-empty valid UTF-8 value of each name Decide reads.
func FromPairs(n int, pair func(i int) (key, value []byte)) Headers {
	h := make(Headers, len(read))
	for i := 0; i < n; i++ {
		k, v := pair(i)
		if len(v) == 0 || !read[string(k)] || !utf8.Valid(v) {
			continue
		}
		if _, seen := h[string(k)]; !seen {
			h[string(k)] = string(v)
		}
	}
	return h
}

// Decide classifies one message. maxValue bounds the payload size.
func Decide(h Headers, value []byte, maxValue int) Decision {
	d := Decision{EventType: h[event.HeaderEventType]}
	if !event.Routed(d.EventType) {
		d.Action = Ignore
		return d
	}
	d.Action = Skip
	if len(value) > maxValue {
		d.Reason = ReasonTooLarge
		return d
	}
	tenant, err := event.ResolveTenant(h[event.HeaderOrgID], h[event.HeaderAccount], h[event.HeaderIdentity])
	if err != nil {
		d.Reason = tenantReason(err)
		return d
	}
	ev, err := event.Decode(event.Type(d.EventType), value)
	switch {
	case errors.Is(err, event.ErrBadID):
		d.Reason = ReasonBadID
		return d
	case err != nil:
		d.Reason = ReasonBadPayload
		return d
	}
	d.Action, d.Event, d.Tenant, d.Identity = Route, ev, tenant, h[event.HeaderIdentity]
	return d
}

func tenantReason(err error) string {
	switch {
	case errors.Is(err, event.ErrIdentityTooLarge):
		return ReasonIdentityTooLarge
	case errors.Is(err, event.ErrBadIdentity):
		return ReasonBadIdentity
	case errors.Is(err, event.ErrBadTenant):
		return ReasonBadTenant
	default:
		return ReasonNoTenant
	}
}

// knownTypes are the event types Sources emits; anything else is counted as
// "other" so a stray header cannot grow the metric's label set.
var knownTypes = map[string]bool{
	"Source.create": true, "Source.update": true, "Source.destroy": true, "Source.pause": true, "Source.unpause": true,
	"Application.create": true, "Application.update": true, "Application.destroy": true,
	"Application.pause": true, "Application.unpause": true,
	"Authentication.create": true, "Authentication.update": true, "Authentication.destroy": true,
	"Endpoint.create": true, "Endpoint.update": true, "Endpoint.destroy": true,
	"ApplicationAuthentication.create": true, "ApplicationAuthentication.update": true,
	"ApplicationAuthentication.destroy": true, "Records.update": true,
}

// MetricType is the event type as a bounded metric label.
func MetricType(eventType string) string {
	switch {
	case eventType == "":
		return "none"
	case knownTypes[eventType]:
		return eventType
	default:
		return "other"
	}
}
