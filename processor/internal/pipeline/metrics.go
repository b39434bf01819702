package pipeline

import (
	"context"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Metrics times the work (work_seconds) and counts where it ended:
// parked_total for a parked source, work_total{kind,state,code} for any
// other end; work handed back ended nowhere yet.
func Metrics(mm *metrics.Metrics) Wrapper {
	return func(next Handler) Handler {
		return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
			started := time.Now()
			o, err := next(ctx, m)
			if handedBack(ctx) {
				return o, err
			}
			mm.WorkSeconds.Observe(time.Since(started).Seconds())
			switch o.State {
			case "":
			case reconcile.StateParked:
				mm.Parked.Inc()
			default:
				mm.Work.WithLabelValues(kindLabel(m.Kind), string(o.State), string(o.Code)).Inc()
			}
			return o, err
		}
	}
}

// kindLabel bounds the kind label to the kinds Cloudoreg knows.
func kindLabel(kind string) string {
	if event.Routed(kind) || kind == work.KindCheck || kind == work.KindReconcile {
		return kind
	}
	return "other"
}
