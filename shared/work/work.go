// Package work defines the JetStream work stream between the listener and the
// processors: subjects, the message format (NATS headers) and the stream and
// consumer configuration. It is the one place both programs agree on.
package work

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/nats-io/nats.go"
)

// Names of the JetStream resources Cloudoreg owns.
const (
	StreamName    = "CLOUDOREG_WORK"
	SubjectPrefix = "cloudoreg.work."
	DLQStreamName = "CLOUDOREG_DLQ"
	DLQPrefix     = "cloudoreg.dlq."
)

// Kinds of work that do not come from the Sources event stream: an
// availability check asked for by Sources, and the periodic reconcile of a
// source that holds an account claim. (A parked retry keeps the kind of the
// work it retries; its attempt header marks it.)
const (
	KindCheck     = "Cloudoreg.check"
	KindReconcile = "Cloudoreg.reconcile"
)

// NATS header names of a work message.
const (
	HeaderKind             = "Cloudoreg-Kind"
	HeaderSourceID         = "Cloudoreg-Source-Id"
	HeaderApplicationID    = "Cloudoreg-Application-Id"
	HeaderAuthenticationID = "Cloudoreg-Authentication-Id"
	HeaderOrgID            = "Cloudoreg-Org-Id"
	HeaderAccount          = "Cloudoreg-Account-Number"
	HeaderIdentity         = "Cloudoreg-Identity"
	HeaderOrigin           = "Cloudoreg-Origin"
	HeaderAttempt          = "Cloudoreg-Attempt"
	HeaderFirstFailure     = "Cloudoreg-First-Failure"
)

// Message is one unit of work: reconcile SourceID because of Kind.
type Message struct {
	// Kind is the Sources event type or KindCheck.
	Kind             string
	SourceID         string
	ApplicationID    string
	AuthenticationID string
	Tenant           event.Tenant
	// Identity is the raw x-rh-identity, copied onto status messages. Secret.
	Identity string
	// Origin says where the work came from (topic/partition/offset, "check",
	// "retry/<source>/<parked revision>"): for logs and as the JetStream
	// dedup id.
	Origin string
	// Attempt and FirstFailure carry the retry budget across a parked retry.
	Attempt      int
	FirstFailure time.Time
}

// Subject is the work subject of a source.
func Subject(sourceID string) string { return SubjectPrefix + sourceID }

// ErrBadMessage means a work message lacks what a reconcile needs.
var ErrBadMessage = errors.New("work message is malformed")

// Header encodes m as NATS headers.
func (m Message) Header() nats.Header {
	h := nats.Header{}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(HeaderKind, m.Kind)
	set(HeaderSourceID, m.SourceID)
	set(HeaderApplicationID, m.ApplicationID)
	set(HeaderAuthenticationID, m.AuthenticationID)
	set(HeaderOrgID, m.Tenant.OrgID)
	set(HeaderAccount, m.Tenant.AccountNumber)
	set(HeaderIdentity, m.Identity)
	set(HeaderOrigin, m.Origin)
	if m.Attempt > 0 {
		h.Set(HeaderAttempt, strconv.Itoa(m.Attempt))
	}
	if !m.FirstFailure.IsZero() {
		h.Set(HeaderFirstFailure, m.FirstFailure.UTC().Format(time.RFC3339Nano))
	}
	return h
}

// Decode reads a work message from NATS headers.
func Decode(h nats.Header) (Message, error) {
	m := Message{
		Kind:             h.Get(HeaderKind),
		SourceID:         h.Get(HeaderSourceID),
		ApplicationID:    h.Get(HeaderApplicationID),
		AuthenticationID: h.Get(HeaderAuthenticationID),
		Tenant:           event.Tenant{OrgID: h.Get(HeaderOrgID), AccountNumber: h.Get(HeaderAccount)},
		Identity:         h.Get(HeaderIdentity),
		Origin:           h.Get(HeaderOrigin),
	}
	if m.Kind == "" {
		return Message{}, fmt.Errorf("%w: no %s", ErrBadMessage, HeaderKind)
	}
	if !event.ValidID(m.SourceID) {
		return Message{}, fmt.Errorf("%w: invalid %s", ErrBadMessage, HeaderSourceID)
	}
	if m.Tenant.Key() == "" {
		return Message{}, fmt.Errorf("%w: no tenant", ErrBadMessage)
	}
	if v := h.Get(HeaderAttempt); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Message{}, fmt.Errorf("%w: invalid %s", ErrBadMessage, HeaderAttempt)
		}
		m.Attempt = n
	}
	if v := h.Get(HeaderFirstFailure); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return Message{}, fmt.Errorf("%w: invalid %s", ErrBadMessage, HeaderFirstFailure)
		}
		m.FirstFailure = t
	}
	return m, nil
}
