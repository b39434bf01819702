// Package resolve finds the source id of a routed event. Most payloads carry
// it; ApplicationAuthentication payloads only name the application, so the
// listener keeps a routing index (application id -> source id) and asks
// Sources only for applications it has not seen. Destroy events rely on the
// index because by then Sources answers 404.
package resolve

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
)

// Index is the routing index. Get returns ok=false when the key is absent.
type Index interface {
	Get(ctx context.Context, applicationID string) (sourceID string, ok bool, err error)
	Put(ctx context.Context, applicationID, sourceID string) error
}

// Applications reads an application from Sources.
type Applications interface {
	Application(ctx context.Context, t event.Tenant, id string) (sources.Application, error)
}

// ErrUnresolvable means the event's source cannot be known: the application
// is gone from Sources and was never indexed, so there is nothing to undo.
var ErrUnresolvable = errors.New("source id cannot be resolved: application unknown to the index and gone from Sources")

// ErrRefused means Sources refused the lookup or answered something
// unusable (a dead-letter failure of package failure): asking again gets
// the same answer, so the event is poison.
var ErrRefused = errors.New("source id cannot be resolved: Sources refused the lookup")

// Via says where a source id came from (a metric label).
type Via string

// Where source ids come from.
const (
	ViaPayload Via = "payload"
	ViaIndex   Via = "index"
	ViaSources Via = "sources"
)

// Resolver resolves source ids.
type Resolver struct {
	Index Index
	Apps  Applications
}

// SourceID returns the event's source id. ErrUnresolvable and ErrRefused
// are final; every other error is transient (the index, or Sources down,
// throttling, or refusing the PSK until an operator fixes it): the caller
// retries.
func (r *Resolver) SourceID(ctx context.Context, ev event.Event, t event.Tenant) (string, Via, error) {
	if !ev.NeedsApplicationLookup() {
		return ev.SourceID, ViaPayload, nil
	}
	id, ok, err := r.Index.Get(ctx, ev.ApplicationID)
	if err != nil {
		return "", "", err
	}
	if ok {
		return id, ViaIndex, nil
	}
	app, err := r.Apps.Application(ctx, t, ev.ApplicationID)
	switch {
	case errors.Is(err, failure.ErrNotFound):
		return "", "", ErrUnresolvable
	case err != nil && failure.IsTransient(err):
		return "", "", err
	case err != nil:
		// The client's error names the path and status, never a secret.
		return "", "", fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if !event.ValidID(app.SourceID) {
		return "", "", ErrUnresolvable
	}
	if err := r.Index.Put(ctx, ev.ApplicationID, app.SourceID); err != nil {
		return "", "", err
	}
	return app.SourceID, ViaSources, nil
}
