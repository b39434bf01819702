// Package work defines the unit of work between the listener and the
// processors: a plain value (which source to reconcile, why, for whom) and
// the names of the streams and subjects it travels on. Its encoding as a
// NATS message and the stream declarations are package workstream's.
package work

import (
	"errors"
	"fmt"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
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

// Validate says what a reconcile would miss in m: its kind, a source id that
// is a Sources id (and so a safe subject token), a tenant.
func (m Message) Validate() error {
	switch {
	case m.Kind == "":
		return fmt.Errorf("%w: no kind", ErrBadMessage)
	case !event.ValidID(m.SourceID):
		return fmt.Errorf("%w: invalid source id", ErrBadMessage)
	case m.Tenant.Key() == "":
		return fmt.Errorf("%w: no tenant", ErrBadMessage)
	}
	return nil
}
