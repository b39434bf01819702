package failure

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/status"
)

func TestPermanent(t *testing.T) {
	cause := errors.New("role denied")
	err := Permanent(status.CG3002, "sts", cause)
	if IsTransient(err) {
		t.Error("permanent classified as transient")
	}
	if CodeOf(err) != status.CG3002 {
		t.Errorf("code %s", CodeOf(err))
	}
	if TargetOf(err) != "sts" {
		t.Errorf("target %s", TargetOf(err))
	}
	if !errors.Is(err, cause) {
		t.Error("cause not unwrapped")
	}
	if got, want := err.Error(), "sts: permanent CG3002 failure: role denied"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// Wrapping keeps the classification.
	wrapped := fmt.Errorf("reconcile source 11: %w", err)
	if IsTransient(wrapped) || CodeOf(wrapped) != status.CG3002 || TargetOf(wrapped) != "sts" || !errors.Is(wrapped, cause) {
		t.Errorf("wrapped: transient %v, code %s, target %s", IsTransient(wrapped), CodeOf(wrapped), TargetOf(wrapped))
	}
}

func TestTransient(t *testing.T) {
	err := Transient("rhsm", context.DeadlineExceeded)
	if !IsTransient(err) {
		t.Error("transient not transient")
	}
	if TargetOf(err) != "rhsm" {
		t.Errorf("target %s", TargetOf(err))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("cause not unwrapped")
	}
	// A transient failure has no code to report; if it is ever reported
	// (retry budget spent) it is CG3000.
	if CodeOf(err) != status.CG3000 {
		t.Errorf("code %s", CodeOf(err))
	}
	if got, want := err.Error(), "rhsm: transient failure: context deadline exceeded"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !IsTransient(fmt.Errorf("x: %w", err)) {
		t.Error("wrapped transient not transient")
	}
}

func TestUnclassified(t *testing.T) {
	plain := errors.New("bug")
	if !IsTransient(plain) {
		t.Error("an unclassified error must be retried, not reported")
	}
	if CodeOf(plain) != status.CG3000 {
		t.Errorf("code %s", CodeOf(plain))
	}
	if TargetOf(plain) != "unknown" {
		t.Errorf("target %s", TargetOf(plain))
	}
	if IsTransient(nil) {
		t.Error("nil is transient")
	}
	if CodeOf(nil) != status.CG3000 || TargetOf(nil) != "unknown" {
		t.Error("nil classification")
	}
	// A permanent failure without a code or target.
	bare := &Error{Err: plain}
	if IsTransient(bare) || CodeOf(bare) != status.CG3000 || TargetOf(bare) != "unknown" {
		t.Errorf("bare: %v %s %s", IsTransient(bare), CodeOf(bare), TargetOf(bare))
	}
}

// The outermost classification wins when failures are nested.
func TestNested(t *testing.T) {
	inner := Permanent(status.CG1004, "arn", errors.New("bad"))
	outer := Transient("sources", inner)
	if !IsTransient(outer) {
		t.Error("outer transient lost")
	}
	if CodeOf(outer) != status.CG3000 {
		t.Errorf("code of a transient failure %s", CodeOf(outer))
	}
	if TargetOf(outer) != "sources" {
		t.Errorf("target %s", TargetOf(outer))
	}
}

func TestEveryCode(t *testing.T) {
	for _, c := range status.Codes() {
		err := Permanent(c, "x", errors.New("y"))
		if CodeOf(err) != c {
			t.Errorf("%s: CodeOf %s", c, CodeOf(err))
		}
		if !strings.Contains(err.Error(), string(c)) {
			t.Errorf("%s: Error() %q", c, err)
		}
		if !strings.HasPrefix(status.UnavailableMessage("1", CodeOf(err)).Error, "Could not enable cloud metering. Error code "+string(c)+". ") {
			t.Errorf("%s: message text", c)
		}
	}
}

// Every kind of failure answers the worker's three questions consistently:
// retry it? tell the customer? dead-letter it with which reason?
func TestClassification(t *testing.T) {
	cause := errors.New("HTTP 401")
	cases := []struct {
		name        string
		err         error
		transient   bool
		forCustomer bool
		reason      DeadLetterReason
		text        string
	}{
		{"permanent", Permanent(status.CG3002, "sts", cause), false, true, "", "sts: permanent CG3002 failure: HTTP 401"},
		{"transient", Transient("rhsm", cause), true, false, "", "rhsm: transient failure: HTTP 401"},
		{"operator", Operator(ReasonSourcesUnauthorized, "sources", cause), true, false, ReasonSourcesUnauthorized, "sources: transient (sources_unauthorized) failure: the configuration of Cloudoreg needs fixing: HTTP 401"},
		{"dead letter", DeadLetter(ReasonSourcesRefused, "sources", cause), false, false, ReasonSourcesRefused, "sources: permanent (sources_refused) failure: HTTP 401"},
		{"unclassified", cause, true, false, "", "HTTP 401"},
	}
	for _, tc := range cases {
		for _, err := range []error{tc.err, fmt.Errorf("reconcile: %w", tc.err)} {
			if IsTransient(err) != tc.transient || ForCustomer(err) != tc.forCustomer || ReasonOf(err) != tc.reason {
				t.Errorf("%s (%v): transient %v, for customer %v, reason %q", tc.name, err, IsTransient(err), ForCustomer(err), ReasonOf(err))
			}
			if !errors.Is(err, cause) {
				t.Errorf("%s: cause lost", tc.name)
			}
			// An operator's problem is logged as one while it is retried.
			if errors.Is(err, ErrConfiguration) != (tc.name == "operator") {
				t.Errorf("%s: configuration %v", tc.name, errors.Is(err, ErrConfiguration))
			}
		}
		if tc.err.Error() != tc.text {
			t.Errorf("%s: Error() = %q, want %q", tc.name, tc.err, tc.text)
		}
	}
	if ForCustomer(nil) || ReasonOf(nil) != "" || IsTransient(nil) {
		t.Error("nil is a failure")
	}
}

func TestDeadLetterReasonsAreDistinct(t *testing.T) {
	seen := map[DeadLetterReason]bool{}
	for _, r := range DeadLetterReasons() {
		if r == "" || seen[r] || strings.ContainsAny(string(r), " .*>") {
			t.Errorf("reason %q empty, repeated or not a label value", r)
		}
		seen[r] = true
	}
}
