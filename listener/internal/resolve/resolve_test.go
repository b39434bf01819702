package resolve

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
)

type fakeIndex struct {
	entries map[string]string
	getErr  error
	putErr  error
	gets    []string
	puts    [][2]string
}

func (f *fakeIndex) Get(_ context.Context, applicationID string) (string, bool, error) {
	f.gets = append(f.gets, applicationID)
	if f.getErr != nil {
		return "", false, f.getErr
	}
	id, ok := f.entries[applicationID]
	return id, ok, nil
}

func (f *fakeIndex) Put(_ context.Context, applicationID, sourceID string) error {
	f.puts = append(f.puts, [2]string{applicationID, sourceID})
	if f.putErr != nil {
		return f.putErr
	}
	if f.entries == nil {
		f.entries = map[string]string{}
	}
	f.entries[applicationID] = sourceID
	return nil
}

type appCall struct {
	tenant event.Tenant
	id     string
}

type fakeApps struct {
	apps  map[string]sources.Application
	err   error
	calls []appCall
}

func (f *fakeApps) Application(_ context.Context, t event.Tenant, id string) (sources.Application, error) {
	f.calls = append(f.calls, appCall{t, id})
	if f.err != nil {
		return sources.Application{}, f.err
	}
	a, ok := f.apps[id]
	if !ok {
		return sources.Application{}, fmt.Errorf("GET /applications/%s: %w", id, failure.ErrNotFound)
	}
	return a, nil
}

var tenant = event.Tenant{OrgID: "1234567", AccountNumber: "7654321"}

func appAuth(typ event.Type) event.Event {
	return event.Event{Type: typ, ApplicationID: "21", AuthenticationID: "41"}
}

func TestPayloadSourceIDNeedsNoCall(t *testing.T) {
	idx, apps := &fakeIndex{getErr: errors.New("must not be called")}, &fakeApps{err: errors.New("must not be called")}
	r := &Resolver{Index: idx, Apps: apps}
	for _, ev := range []event.Event{
		{Type: event.SourceDestroy, SourceID: "11"},
		{Type: event.AppDestroy, SourceID: "11", ApplicationID: "21"},
		{Type: event.AuthUpdate, SourceID: "11", ApplicationID: "21", AuthenticationID: "41"},
	} {
		id, via, err := r.SourceID(context.Background(), ev, tenant)
		if err != nil || id != "11" || via != ViaPayload {
			t.Errorf("%s: %q, %q, %v", ev.Type, id, via, err)
		}
	}
	if len(idx.gets)+len(idx.puts)+len(apps.calls) != 0 {
		t.Errorf("calls made: %v %v %v", idx.gets, idx.puts, apps.calls)
	}
}

func TestIndexHit(t *testing.T) {
	idx := &fakeIndex{entries: map[string]string{"21": "11"}}
	apps := &fakeApps{err: errors.New("must not be called")}
	r := &Resolver{Index: idx, Apps: apps}
	for _, typ := range []event.Type{event.AppAuthCreate, event.AppAuthDestroy} {
		id, via, err := r.SourceID(context.Background(), appAuth(typ), tenant)
		if err != nil || id != "11" || via != ViaIndex {
			t.Errorf("%s: %q, %q, %v", typ, id, via, err)
		}
	}
	if len(apps.calls) != 0 || len(idx.puts) != 0 {
		t.Errorf("Sources asked %v, index written %v", apps.calls, idx.puts)
	}
	if len(idx.gets) != 2 || idx.gets[0] != "21" {
		t.Errorf("index gets %v", idx.gets)
	}
}

func TestIndexMissAsksSourcesAndIndexes(t *testing.T) {
	idx := &fakeIndex{}
	apps := &fakeApps{apps: map[string]sources.Application{"21": {ID: "21", SourceID: "11", ApplicationTypeID: "2"}}}
	r := &Resolver{Index: idx, Apps: apps}
	id, via, err := r.SourceID(context.Background(), appAuth(event.AppAuthCreate), tenant)
	if err != nil || id != "11" || via != ViaSources {
		t.Fatalf("%q, %q, %v", id, via, err)
	}
	if len(apps.calls) != 1 || apps.calls[0] != (appCall{tenant, "21"}) {
		t.Errorf("Sources calls %v", apps.calls)
	}
	if len(idx.puts) != 1 || idx.puts[0] != [2]string{"21", "11"} {
		t.Errorf("index puts %v", idx.puts)
	}
	// The next event of the application (the destroy, when Sources already
	// answers 404) is resolved from the index.
	apps.apps = nil
	id, via, err = r.SourceID(context.Background(), appAuth(event.AppAuthDestroy), tenant)
	if err != nil || id != "11" || via != ViaIndex {
		t.Fatalf("after indexing: %q, %q, %v", id, via, err)
	}
	if len(apps.calls) != 1 {
		t.Errorf("Sources asked again: %v", apps.calls)
	}
}

func TestSourcesNotFoundIsUnresolvable(t *testing.T) {
	idx := &fakeIndex{}
	r := &Resolver{Index: idx, Apps: &fakeApps{}}
	id, via, err := r.SourceID(context.Background(), appAuth(event.AppAuthDestroy), tenant)
	if !errors.Is(err, ErrUnresolvable) || id != "" || via != "" {
		t.Fatalf("%q, %q, %v", id, via, err)
	}
	if len(idx.puts) != 0 {
		t.Errorf("indexed %v", idx.puts)
	}
}

func TestSourcesTransientErrorIsReturned(t *testing.T) {
	for _, cause := range []error{
		failure.Transient("sources", errors.New("503 Service Unavailable")),
		failure.Transient("sources", context.DeadlineExceeded),
		failure.Operator(failure.ReasonSourcesUnauthorized, "sources", errors.New("GET")),
	} {
		idx := &fakeIndex{}
		r := &Resolver{Index: idx, Apps: &fakeApps{err: cause}}
		id, _, err := r.SourceID(context.Background(), appAuth(event.AppAuthCreate), tenant)
		if !errors.Is(err, cause) || errors.Is(err, ErrUnresolvable) || id != "" {
			t.Errorf("%v: %q, %v", cause, id, err)
		}
		if len(idx.puts) != 0 {
			t.Errorf("%v: indexed %v", cause, idx.puts)
		}
	}
}

func TestIndexErrorsAreReturned(t *testing.T) {
	getErr := errors.New("routing index get: nats: timeout")
	apps := &fakeApps{apps: map[string]sources.Application{"21": {ID: "21", SourceID: "11"}}}
	r := &Resolver{Index: &fakeIndex{getErr: getErr}, Apps: apps}
	_, _, err := r.SourceID(context.Background(), appAuth(event.AppAuthCreate), tenant)
	if !errors.Is(err, getErr) || errors.Is(err, ErrUnresolvable) {
		t.Errorf("get: %v", err)
	}
	if len(apps.calls) != 0 {
		t.Errorf("Sources asked although the index failed: %v", apps.calls)
	}

	putErr := errors.New("routing index put: nats: timeout")
	idx := &fakeIndex{putErr: putErr}
	r = &Resolver{Index: idx, Apps: apps}
	id, _, err := r.SourceID(context.Background(), appAuth(event.AppAuthCreate), tenant)
	if !errors.Is(err, putErr) || id != "" {
		t.Errorf("put: %q, %v", id, err)
	}
	if len(idx.puts) != 1 {
		t.Errorf("puts %v", idx.puts)
	}
}

func TestInvalidSourceIDFromSourcesIsUnresolvable(t *testing.T) {
	for _, bad := range []string{"", "0", "-1", "011", "1.>", "*", "11 ", "abc", "12345678901234567890"} {
		idx := &fakeIndex{}
		r := &Resolver{Index: idx, Apps: &fakeApps{apps: map[string]sources.Application{"21": {ID: "21", SourceID: bad}}}}
		id, via, err := r.SourceID(context.Background(), appAuth(event.AppAuthCreate), tenant)
		if !errors.Is(err, ErrUnresolvable) || id != "" || via != "" {
			t.Errorf("source id %q: %q, %q, %v", bad, id, via, err)
		}
		if len(idx.puts) != 0 {
			t.Errorf("source id %q indexed: %v", bad, idx.puts)
		}
	}
}

// Any answer of Sources that is neither gone nor worth retrying is final:
// retrying it would stall the partition for ever. (The client classifies
// every answer and transport error: shared/sourcesapi's tests.)
func TestSourcesRefusalIsFinal(t *testing.T) {
	for _, cause := range []error{
		failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /applications/21: HTTP 400: bad request")),
		failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /applications/21: HTTP 431")),
		failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /applications/21: undecodable response")),
		failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /applications/21: net/http: invalid header field value")),
	} {
		idx := &fakeIndex{}
		r := &Resolver{Index: idx, Apps: &fakeApps{err: cause}}
		id, via, err := r.SourceID(context.Background(), appAuth(event.AppAuthCreate), tenant)
		if !errors.Is(err, ErrRefused) || id != "" || via != "" {
			t.Errorf("%v: %q, %q, %v, want ErrRefused", cause, id, via, err)
		}
		if len(idx.puts) != 0 {
			t.Errorf("%v: indexed %v", cause, idx.puts)
		}
	}
}
