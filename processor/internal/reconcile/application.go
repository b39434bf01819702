package reconcile

import (
	"context"

	"github.com/cloudoreg/cloudoreg/shared/work"
)

// ApplicationID is the source's cloud-meter application, "" when it has
// none: for work that names no application (an availability check, a
// periodic reconcile) but must still tell the customer an outcome.
func (r *Reconciler) ApplicationID(ctx context.Context, m work.Message) (string, error) {
	app, _, err := r.cloudMeterApplication(ctx, m)
	return app.ID, err
}
