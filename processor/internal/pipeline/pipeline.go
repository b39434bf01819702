// Package pipeline is what the processor does with one work message: a
// Handler (the reconcile) wrapped, from the inside out, by
//
//  1. RetryInPlace: transient failures are retried within a short window;
//  2. Park: a failure that outlasts it parks the source for a later retry,
//     or, once the retry budget is spent, becomes a failure for good;
//  3. DeadLetter: a failure for good is copied to the dead-letter stream,
//     and a spent budget is then told to the customer (reconcile's GiveUp);
//  4. Record: the source's outcome record, and the periodic repairs;
//  5. Metrics: work_total, parked_total, work_seconds;
//  6. Log: one line per message.
//
// Chain(h, Log, Metrics, Record, DeadLetter, Park, RetryInPlace) builds it.
// The result tells the transport how to settle the message: nil (done or
// parked: acknowledge), an error wrapping ErrDeadLettered (terminate it),
// anything else (hand it back for a later redelivery). A context that ends
// passes through every wrapper untouched: the work is handed back, and
// nothing is parked, recorded, counted or logged for it.
//
// Every wrapper is a plain function of plain values; none knows JetStream
// or Kafka (the transport gives each message's dead-letter copy).
package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Handler processes one work message.
type Handler func(ctx context.Context, m work.Message) (reconcile.Outcome, error)

// Wrapper adds one concern around a Handler.
type Wrapper func(Handler) Handler

// Chain wraps h in ws, ws[0] outermost.
func Chain(h Handler, ws ...Wrapper) Handler {
	for i := len(ws) - 1; i >= 0; i-- {
		h = ws[i](h)
	}
	return h
}

// ErrHandBack is wrapped by the error of work that could not be settled
// here (parking or dead-lettering failed): the transport hands the message
// back for a redelivery later.
var ErrHandBack = errors.New("work handed back")

// The two ways work is handed back, told apart in the log.
var (
	errParkingFailed       = fmt.Errorf("%w: parking failed", ErrHandBack)
	errDeadLetteringFailed = fmt.Errorf("%w: dead-lettering failed", ErrHandBack)
)

// ErrDeadLettered is wrapped by the error of work copied to the dead-letter
// stream: the transport terminates the message.
var ErrDeadLettered = errors.New("work dead-lettered")

// DeadLettered is the error of dead-lettered work.
type DeadLettered struct {
	Reason failure.DeadLetterReason
	// Cause is the failure the work was dead-lettered for.
	Cause error
	// NotTold says why the customer was not told CG3000 about a spent
	// budget (see reconcile's GiveUp); nil when told or not a spent budget.
	NotTold error
}

func (e *DeadLettered) Error() string {
	return fmt.Sprintf("%s (%s): %v", ErrDeadLettered, e.Reason, e.Cause)
}

// Is makes every DeadLettered match ErrDeadLettered.
func (e *DeadLettered) Is(target error) bool { return target == ErrDeadLettered }

func (e *DeadLettered) Unwrap() error { return e.Cause }

// handedBack tells whether the work stops here because ctx ended.
func handedBack(ctx context.Context) bool { return ctx.Err() != nil }
