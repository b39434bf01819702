package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// TestRecord: work that ended somewhere leaves the source's record (the
// attempts counted over every delivery); work handed back leaves none; a
// failed write changes nothing of the result.
func TestRecord(t *testing.T) {
	sts := errors.New("sts: transient failure: throttled")
	dead := &DeadLettered{Reason: "sources_refused"}
	cases := []struct {
		name   string
		in     result
		ctx    context.Context
		putErr error
		want   *outcomes.Record
	}{
		{"available", result{reconcile.Outcome{State: reconcile.StateAvailable, ApplicationID: "21", AccountID: "123456789012", Attempts: 2}, nil}, nil, nil,
			&outcomes.Record{State: "available", ApplicationID: "21", AccountID: "123456789012", Attempts: 5}},
		{"unavailable", result{reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3002, ApplicationID: "21", Cause: sts, Attempts: 1}, nil}, nil, nil,
			&outcomes.Record{State: "unavailable", Code: "CG3002", ApplicationID: "21", Attempts: 4}},
		{"parked", result{reconcile.Outcome{State: reconcile.StateParked, ApplicationID: "21", Reason: sts.Error(), Cause: sts, Attempts: 3}, nil}, nil, nil,
			&outcomes.Record{State: "retrying", Reason: sts.Error(), ApplicationID: "21", Attempts: 6}},
		{"dead-lettered", result{reconcile.Outcome{State: reconcile.StateDeadLettered, ApplicationID: "21", Reason: "sources_refused", Attempts: 1}, dead}, nil, nil,
			&outcomes.Record{State: "dead_lettered", Reason: "sources_refused", ApplicationID: "21", Attempts: 4}},
		{"handed back", result{reconcile.Outcome{Attempts: 1}, ErrHandBack}, nil, nil, nil},
		{"ctx ended", result{reconcile.Outcome{State: reconcile.StateAvailable, Attempts: 1}, nil}, cancelled(), nil, nil},
		{"the write fails", result{reconcile.Outcome{State: reconcile.StateAvailable, Attempts: 1}, nil}, nil, errKV, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			store := newOutcomeStore()
			store.err = tc.putErr
			log, hook := testLog()
			before := time.Now().UTC()
			o, err := Record(store, metrics.New().PeriodicRepairs, log)(returns(tc.in.o, tc.in.err).handle)(ctx, message(3))
			if o != tc.in.o || !errors.Is(err, tc.in.err) {
				t.Errorf("%+v, %v, want %+v, %v passed", o, err, tc.in.o, tc.in.err)
			}
			got, recorded := store.records["9"]
			if tc.want == nil {
				if recorded {
					t.Errorf("recorded %+v", got)
				}
			} else {
				want := *tc.want
				want.OrgID, want.LastEvent, want.Origin, want.Time = "o1", "Authentication.update", "platform.sources.event-stream/0/7", got.Time
				if got != want || got.Time.Before(before) || got.Time.Location() != time.UTC {
					t.Errorf("record %+v, want %+v", got, want)
				}
			}
			warned := len(hook.got) == 1 && hook.got[0].Message == "recording the outcome failed"
			if warned != (tc.putErr != nil) || (len(hook.got) > 1) {
				t.Errorf("log %v, want a warning only for a failed write", hook.got)
			}
		})
	}
}

// TestRecordCountsPeriodicRepairs: a periodic reconcile's outcome is
// compared with the record it replaces; each difference the events should
// have made is counted (and logged) once. Other work is not compared.
func TestRecordCountsPeriodicRepairs(t *testing.T) {
	removed := reconcile.Outcome{State: reconcile.StateRemoved}
	availableA := reconcile.Outcome{State: reconcile.StateAvailable, AccountID: "A"}
	availableB := reconcile.Outcome{State: reconcile.StateAvailable, AccountID: "B"}
	cg3002 := reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3002}
	cg3003 := reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3003}
	recordOf := func(o reconcile.Outcome) *outcomes.Record {
		return &outcomes.Record{State: string(o.State), Code: string(o.Code), AccountID: o.AccountID}
	}
	const (
		rm  = metrics.RepairRemoved
		reg = metrics.RepairReregistered
		re  = metrics.RepairStatusResent
	)
	cases := []struct {
		name string
		kind string
		prev *outcomes.Record
		o    reconcile.Outcome
		want []string
	}{
		{"removed, nothing recorded", work.KindReconcile, nil, removed, []string{rm}},
		{"removed, recorded removed", work.KindReconcile, recordOf(removed), removed, nil},
		{"removed, recorded available", work.KindReconcile, recordOf(availableA), removed, []string{rm}},
		{"available, nothing recorded", work.KindReconcile, nil, availableA, []string{reg, re}},
		{"available, recorded the same", work.KindReconcile, recordOf(availableA), availableA, nil},
		{"available, recorded another account", work.KindReconcile, recordOf(availableA), availableB, []string{reg}},
		{"available, recorded unavailable", work.KindReconcile, recordOf(cg3002), availableA, []string{reg, re}},
		{"unavailable, recorded available", work.KindReconcile, recordOf(availableA), cg3002, []string{re}},
		{"unavailable, recorded another code", work.KindReconcile, recordOf(cg3002), cg3003, []string{re}},
		{"unavailable, recorded the same", work.KindReconcile, recordOf(cg3002), cg3002, nil},
		{"paused", work.KindReconcile, nil, reconcile.Outcome{State: reconcile.StatePaused}, nil},
		{"parked", work.KindReconcile, nil, reconcile.Outcome{State: reconcile.StateParked}, nil},
		{"an event", "Authentication.update", nil, availableA, nil},
		{"a check", work.KindCheck, recordOf(cg3002), availableA, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := newOutcomeStore()
			if tc.prev != nil {
				store.records["9"] = *tc.prev
			}
			m := metrics.New()
			log, hook := testLog()
			msg := message(0)
			msg.Kind = tc.kind
			if _, err := Record(store, m.PeriodicRepairs, log)(returns(tc.o, nil).handle)(context.Background(), msg); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range []string{rm, reg, re} {
				switch n := counterValue(m.PeriodicRepairs.WithLabelValues(r)); n {
				case 0:
				case 1:
					got = append(got, r)
				default:
					t.Errorf("repair %q counted %v times", r, n)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("repairs %v, want %v", got, tc.want)
			}
			logged := len(hook.got) == 1 && hook.got[0].Message == "periodic reconcile repaired what an event had left" &&
				fmt.Sprint(hook.got[0].Data["repairs"]) == fmt.Sprint(tc.want)
			if logged != (len(tc.want) > 0) || len(hook.got) > 1 {
				t.Errorf("log %v, want one warning naming %v", hook.got, tc.want)
			}
			if compared := store.gets > 0; compared != (tc.kind == work.KindReconcile && tc.o.State != reconcile.StateParked) {
				t.Errorf("read the previous record %d times", store.gets)
			}
		})
	}
}

// TestRecordKeepsWhatCloudoregDid: for every state a source's record can
// hold (or none, or a failed read), an outcome that changed nothing does not
// replace what Cloudoreg last did: other_org never writes (the record stays
// the owning org's), not_ours writes only over no record or work in
// progress. Every other outcome replaces any record. The same holds for a
// periodic reconcile, which still reads the record once.
func TestRecordKeepsWhatCloudoregDid(t *testing.T) {
	all := []reconcile.State{
		reconcile.StateAvailable, reconcile.StateUnavailable, reconcile.StateRemoved, reconcile.StatePaused,
		reconcile.StateNotOurs, reconcile.StateOtherOrg, reconcile.StateParked, reconcile.StateDeadLettered,
	}
	prevs := append([]reconcile.State{"(none)", "(read fails)"}, all...)
	for _, kind := range []string{string(event.AuthUpdate), work.KindReconcile} {
		for _, s := range all {
			for _, prev := range prevs {
				t.Run(kind+": "+string(s)+" over "+string(prev), func(t *testing.T) {
					store := newOutcomeStore()
					switch prev {
					case "(none)":
					case "(read fails)":
						store.getErr = errKV
					default:
						store.records["9"] = outcomes.Record{State: string(prev), OrgID: "owner"}
					}
					log, hook := testLog()
					m := message(0)
					m.Kind = kind
					if _, err := Record(store, metrics.New().PeriodicRepairs, log)(returns(reconcile.Outcome{State: s}, nil).handle)(context.Background(), m); err != nil {
						t.Fatal(err)
					}
					want := true
					switch s {
					case reconcile.StateOtherOrg:
						want = false
					case reconcile.StateNotOurs:
						want = prev == "(none)" || prev == reconcile.StateParked || prev == reconcile.StateDeadLettered
					}
					got := store.records["9"]
					if replaced := got.State == string(s) && got.OrgID == "o1"; replaced != want {
						t.Errorf("record %+v; replaced %v, want %v", got, replaced, want)
					}
					warnings := 0
					for _, e := range hook.got {
						if e.Message == "reading the outcome record failed: not replaced" {
							warnings++
						}
					}
					wantWarnings := 0
					if s == reconcile.StateNotOurs && prev == "(read fails)" {
						wantWarnings = 1
					}
					if warnings != wantWarnings {
						t.Errorf("log %v, want a warning only when the read a not_ours needs fails", hook.got)
					}
					if store.gets > 1 {
						t.Errorf("read the record %d times, want at most once", store.gets)
					}
				})
			}
		}
	}
}
