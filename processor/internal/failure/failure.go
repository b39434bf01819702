// Package failure classifies what went wrong in a reconcile: a permanent
// failure carries the customer-facing code to report, a transient one is
// retried and never reported until the retry budget is spent.
package failure

import (
	"errors"
	"fmt"

	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Error is a classified failure of one external call or check.
type Error struct {
	// Transient failures are retried; permanent ones are reported with Code.
	Transient bool
	// Code is the customer-facing code of a permanent failure.
	Code status.Code
	// Target names the dependency that failed ("sources", "sts", "rhsm",
	// "kafka") for logs and metric labels; never a secret.
	Target string
	// Err is the cause. It must not contain secrets: it is logged.
	Err error
}

func (e *Error) Error() string {
	kind := "permanent " + string(e.Code)
	if e.Transient {
		kind = "transient"
	}
	return fmt.Sprintf("%s: %s failure: %v", e.Target, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrConfiguration is wrapped by transient failures that Cloudoreg's own
// configuration causes (its credentials rejected): retrying keeps the work
// until an operator fixes it, and they are logged as errors, not warnings.
var ErrConfiguration = errors.New("Cloudoreg's configuration needs fixing")

// Permanent is a failure to report to the customer with code.
func Permanent(code status.Code, target string, err error) error {
	return &Error{Code: code, Target: target, Err: err}
}

// Transient is a failure that may go away if retried.
func Transient(target string, err error) error {
	return &Error{Transient: true, Target: target, Err: err}
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
