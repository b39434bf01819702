package pipeline

import (
	"context"
	"errors"
	"testing"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// TestMetrics: every end is timed and counted once where it belongs: a
// parked source in parked_total, any other end in work_total by kind
// (bounded), state and code; work handed back is timed only, and work cut
// short by ctx not at all.
func TestMetrics(t *testing.T) {
	type counted struct {
		kind, state, code string // work_total ("" none)
		parked, timed     float64
	}
	cases := []struct {
		name string
		kind string
		in   result
		ctx  context.Context
		want counted
	}{
		{"available", "Authentication.update", result{reconcile.Outcome{State: reconcile.StateAvailable}, nil}, nil,
			counted{"Authentication.update", "available", "", 0, 1}},
		{"unavailable", work.KindCheck, result{reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3002}, nil}, nil,
			counted{work.KindCheck, "unavailable", "CG3002", 0, 1}},
		{"budget spent", work.KindReconcile, result{reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3000}, &DeadLettered{Reason: "budget_spent"}}, nil,
			counted{work.KindReconcile, "unavailable", "CG3000", 0, 1}},
		{"dead-lettered", "Source.destroy", result{reconcile.Outcome{State: reconcile.StateDeadLettered}, &DeadLettered{Reason: "internal"}}, nil,
			counted{"Source.destroy", "dead_lettered", "", 0, 1}},
		{"an unknown kind", "Endpoint.create", result{reconcile.Outcome{State: reconcile.StateNotOurs}, nil}, nil,
			counted{"other", "not_ours", "", 0, 1}},
		{"parked", "Authentication.update", result{reconcile.Outcome{State: reconcile.StateParked}, nil}, nil,
			counted{"", "", "", 1, 1}},
		{"handed back", "Authentication.update", result{reconcile.Outcome{}, ErrHandBack}, nil,
			counted{"", "", "", 0, 1}},
		{"ctx ended", "Authentication.update", result{reconcile.Outcome{State: reconcile.StateAvailable}, nil}, cancelled(),
			counted{"", "", "", 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			m := metrics.New()
			msg := message(0)
			msg.Kind = tc.kind
			o, err := Metrics(m)(returns(tc.in.o, tc.in.err).handle)(ctx, msg)
			if o != tc.in.o || !errors.Is(err, tc.in.err) {
				t.Errorf("%+v, %v, want %+v, %v passed", o, err, tc.in.o, tc.in.err)
			}
			total := 0.0
			for _, f := range gather(t, m, "cloudoreg_processor_work_total") {
				total += f.value
				l := f.labels
				if tc.want.kind == "" || l["kind"] != tc.want.kind || l["state"] != tc.want.state || l["code"] != tc.want.code || f.value != 1 {
					t.Errorf("work_total%v = %v, want %+v", l, f.value, tc.want)
				}
			}
			if want := map[bool]float64{true: 0, false: 1}[tc.want.kind == ""]; total != want {
				t.Errorf("work_total sums to %v, want %v", total, want)
			}
			if n := counterValue(m.Parked); n != tc.want.parked {
				t.Errorf("parked_total %v, want %v", n, tc.want.parked)
			}
			if n := counterValue(m.WorkSeconds); n != tc.want.timed {
				t.Errorf("work_seconds observed %v times, want %v", n, tc.want.timed)
			}
		})
	}
}

type sample struct {
	labels map[string]string
	value  float64
}

// gather reads every series of a counter family.
func gather(t *testing.T, m *metrics.Metrics, family string) []sample {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, s := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range s.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out = append(out, sample{l, s.GetCounter().GetValue()})
		}
	}
	return out
}
