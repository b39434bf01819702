// Package failure classifies what went wrong in a reconcile: a permanent
// failure carries the customer-facing code to report, a transient one is
// retried and never reported until the retry budget is spent, and a failure
// that is not the customer's doing (Cloudoreg's configuration, an answer of
// Sources it cannot use) carries the reason it is dead-lettered with instead
// of a code.
package failure

import (
	"errors"
	"fmt"

	"github.com/cloudoreg/cloudoreg/shared/status"
)

// DeadLetterReason says why a work message left the work stream without an
// outcome: the Cloudoreg-Dlq-Reason header and the reason label of
// cloudoreg_processor_dead_letters_total.
type DeadLetterReason string

// Every reason a work message is dead-lettered for.
const (
	// ReasonUndecodable: the work message itself cannot be read.
	ReasonUndecodable DeadLetterReason = "undecodable"
	// ReasonInternal: a failure of Cloudoreg's own that retrying cannot fix.
	ReasonInternal DeadLetterReason = "internal"
	// ReasonBudgetSpent: transient failures outlasted the retry budget; the
	// customer is told CG3000.
	ReasonBudgetSpent DeadLetterReason = "budget_spent"
	// ReasonMaxDeliveries: processors kept dying on the message.
	ReasonMaxDeliveries DeadLetterReason = "max_deliveries"
	// ReasonSourcesRefused: Sources refused a read (400 and other 4xx) or
	// answered something undecodable. Asking again gets the same answer.
	ReasonSourcesRefused DeadLetterReason = "sources_refused"
	// ReasonSourcesUnauthorized: Sources refused Cloudoreg's PSK (401/403)
	// for the whole retry budget. Nothing is reported to the customer.
	ReasonSourcesUnauthorized DeadLetterReason = "sources_unauthorized"
)

// DeadLetterReasons lists every reason, for metrics and documentation.
func DeadLetterReasons() []DeadLetterReason {
	return []DeadLetterReason{ReasonUndecodable, ReasonInternal, ReasonBudgetSpent, ReasonMaxDeliveries,
		ReasonSourcesRefused, ReasonSourcesUnauthorized}
}

// Error is a classified failure of one external call or check.
type Error struct {
	// Transient failures are retried; permanent ones are reported with Code
	// unless Reason is set.
	Transient bool
	// Code is the customer-facing code of a permanent failure.
	Code status.Code
	// Reason marks a failure that is never the customer's: the message is
	// dead-lettered with it (at once when permanent, when the retry budget
	// is spent when transient) and no status is reported.
	Reason DeadLetterReason
	// Target names the dependency that failed ("sources", "sts", "rhsm",
	// "kafka") for logs and metric labels; never a secret.
	Target string
	// Err is the cause. It must not contain secrets: it is logged.
	Err error
}

func (e *Error) Error() string {
	kind := "permanent " + string(e.Code)
	switch {
	case e.Transient && e.Reason != "":
		kind = "transient (" + string(e.Reason) + ")"
	case e.Transient:
		kind = "transient"
	case e.Reason != "":
		kind = "permanent (" + string(e.Reason) + ")"
	}
	return fmt.Sprintf("%s: %s failure: %v", e.Target, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Sentinels an adapter wraps so the core can act on what happened without
// knowing the transport: the resource is gone (HTTP 404: not an error to
// retry), or it already exists (RHSM's 409 on a registration).
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists (409 Conflict)")
)

// ErrConfiguration is wrapped by transient failures that Cloudoreg's own
// configuration causes (its credentials rejected): retrying keeps the work
// until an operator fixes it, and they are logged as errors, not warnings.
var ErrConfiguration = errors.New("the configuration of Cloudoreg needs fixing")

// Permanent is a failure to report to the customer with code.
func Permanent(code status.Code, target string, err error) error {
	return &Error{Code: code, Target: target, Err: err}
}

// Transient is a failure that may go away if retried.
func Transient(target string, err error) error {
	return &Error{Transient: true, Target: target, Err: err}
}

// DeadLetter is a failure that retrying cannot fix and that is not the
// customer's doing: the message is dead-lettered with reason.
func DeadLetter(reason DeadLetterReason, target string, err error) error {
	return &Error{Reason: reason, Target: target, Err: err}
}

// Operator is a failure an operator must fix (Cloudoreg's own
// configuration, so it wraps ErrConfiguration): retried like a transient
// one in case the fix comes, and dead-lettered with reason, never
// reported, when the budget is spent.
func Operator(reason DeadLetterReason, target string, err error) error {
	return &Error{Transient: true, Reason: reason, Target: target, Err: fmt.Errorf("%w: %w", ErrConfiguration, err)}
}

// IsTransient tells whether err should be retried. An unclassified error is
// treated as transient: retrying a bug costs time, reporting a false
// "unavailable" to a customer costs trust.
func IsTransient(err error) bool {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Transient
	}
	return err != nil
}

// ForCustomer tells whether err is a permanent failure of the customer's
// setup, to be reported with CodeOf(err).
func ForCustomer(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && !fe.Transient && fe.Reason == ""
}

// ReasonOf is the dead-letter reason err carries, "" when it carries none.
func ReasonOf(err error) DeadLetterReason {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return ""
}

// CodeOf is the code to report for a permanent err (CG3000 when unclassified).
func CodeOf(err error) status.Code {
	var fe *Error
	if errors.As(err, &fe) && !fe.Transient && fe.Code != "" {
		return fe.Code
	}
	return status.CG3000
}

// TargetOf names the dependency that failed, or "unknown".
func TargetOf(err error) string {
	var fe *Error
	if errors.As(err, &fe) && fe.Target != "" {
		return fe.Target
	}
	return "unknown"
}
