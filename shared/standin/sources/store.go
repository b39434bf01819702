package sources

import (
	"context"
	"sort"
	"strconv"
	"sync"
)

// Snapshot is a read-only copy of the stand-in's state, keyed by id as a
// string (the form Cloudoreg uses everywhere).
type Snapshot struct {
	Sources                    map[string]Source
	Applications               map[string]Application
	Authentications            map[string]Authentication
	ApplicationAuthentications map[string]ApplicationAuthentication
	// StatusLog is every message read from the status topic, in the order read.
	StatusLog []StatusRecord
}

// state is guarded by store.mu. Records are kept by pointer so an update is
// one assignment; everything that leaves the store is a copy.
type state struct {
	// Separate sequences per table, shared by all tenants, like the database.
	// They start far apart so that an id of one kind never happens to be a
	// valid id of another kind in a test, which would hide mix-ups.
	nextTenant, nextSource, nextApp, nextAuth, nextLink int64

	tenants   []*tenant
	sources   map[int64]*Source
	apps      map[int64]*Application
	auths     map[int64]*Authentication
	links     map[int64]*ApplicationAuthentication
	statusLog []StatusRecord
}

type store struct {
	mu sync.RWMutex
	st state
	// changed is closed and replaced on every change: a broadcast that
	// Await can select on without polling.
	changed chan struct{}
}

func newStore() *store {
	return &store{
		st: state{
			nextTenant: 1, nextSource: 1001, nextApp: 2001, nextAuth: 3001, nextLink: 4001,
			sources: map[int64]*Source{},
			apps:    map[int64]*Application{},
			auths:   map[int64]*Authentication{},
			links:   map[int64]*ApplicationAuthentication{},
		},
		changed: make(chan struct{}),
	}
}

// read runs fn with the state locked for reading.
func (s *store) read(fn func(st *state)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(&s.st)
}

// update runs fn with the state locked for writing and wakes every waiter
// when fn succeeds. fn must validate before it mutates: an error means
// nothing changed.
func (s *store) update(fn func(st *state) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := fn(&s.st); err != nil {
		return err
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *store) snapshot() (Snapshot, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := Snapshot{
		Sources:                    make(map[string]Source, len(s.st.sources)),
		Applications:               make(map[string]Application, len(s.st.apps)),
		Authentications:            make(map[string]Authentication, len(s.st.auths)),
		ApplicationAuthentications: make(map[string]ApplicationAuthentication, len(s.st.links)),
		StatusLog:                  cloneStatusLog(s.st.statusLog),
	}
	for id, v := range s.st.sources {
		snap.Sources[idString(id)] = v.clone()
	}
	for id, v := range s.st.apps {
		snap.Applications[idString(id)] = v.clone()
	}
	for id, v := range s.st.auths {
		snap.Authentications[idString(id)] = v.clone()
	}
	for id, v := range s.st.links {
		snap.ApplicationAuthentications[idString(id)] = *v
	}
	return snap, s.changed
}

// await re-evaluates pred on a fresh snapshot after every change.
func (s *store) await(ctx context.Context, pred func(Snapshot) bool) error {
	for {
		snap, changed := s.snapshot()
		if pred(snap) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func idString(id int64) string { return strconv.FormatInt(id, 10) }

// tenant returns the tenant for a request, creating it on first use. A new
// tenant changes nothing a waiter can see, so there is no broadcast. Tenants
// are never modified after creation and may be read without the lock.
func (s *store) tenant(orgID, account string) *tenant {
	s.mu.RLock()
	t, ok := s.st.findTenant(orgID, account)
	s.mu.RUnlock()
	if ok {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.tenantFor(orgID, account)
}

// knownTenant finds a tenant without creating one: the status listener drops
// messages of tenants it does not know.
func (s *store) knownTenant(orgID, account string) (*tenant, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.findTenant(orgID, account)
}

// tenantFor finds the tenant like the real service (org id, else account
// number) and creates it on first use, as its tenancy middleware does.
func (st *state) tenantFor(orgID, account string) *tenant {
	if t, ok := st.findTenant(orgID, account); ok {
		return t
	}
	t := &tenant{id: st.nextTenant, orgID: orgID, account: account}
	st.nextTenant++
	st.tenants = append(st.tenants, t)
	return t
}

func (st *state) findTenant(orgID, account string) (*tenant, bool) {
	for _, t := range st.tenants {
		if orgID != "" && t.orgID == orgID {
			return t, true
		}
	}
	for _, t := range st.tenants {
		if account != "" && t.account == account {
			return t, true
		}
	}
	return nil, false
}

// Lookups scoped to a tenant: another tenant's resource is "not found".

func (st *state) source(tid, id int64) (*Source, bool) {
	v, ok := st.sources[id]
	return v, ok && v.tenantID == tid
}

func (st *state) app(tid, id int64) (*Application, bool) {
	v, ok := st.apps[id]
	return v, ok && v.tenantID == tid
}

func (st *state) auth(tid, id int64) (*Authentication, bool) {
	v, ok := st.auths[id]
	return v, ok && v.tenantID == tid
}

func (st *state) link(tid, id int64) (*ApplicationAuthentication, bool) {
	v, ok := st.links[id]
	return v, ok && v.tenantID == tid
}

func (st *state) sourceNameTaken(tid int64, name string) bool {
	for _, v := range st.sources {
		if v.tenantID == tid && v.Name == name {
			return true
		}
	}
	return false
}

func (st *state) sourceHasAppType(sourceID, appTypeID int64) bool {
	for _, v := range st.apps {
		if v.SourceID == sourceID && v.ApplicationTypeID == appTypeID {
			return true
		}
	}
	return false
}

// The list helpers return records sorted by id, as the database would.

func sortedKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

func (st *state) listSources(tid int64) []Source {
	var out []Source
	for _, id := range sortedKeys(st.sources) {
		if v := st.sources[id]; v.tenantID == tid {
			out = append(out, v.clone())
		}
	}
	return out
}

func (st *state) listApps(tid int64, keep func(*Application) bool) []Application {
	var out []Application
	for _, id := range sortedKeys(st.apps) {
		if v := st.apps[id]; v.tenantID == tid && keep(v) {
			out = append(out, v.clone())
		}
	}
	return out
}

func (st *state) listAuths(tid int64, keep func(*Authentication) bool) []Authentication {
	var out []Authentication
	for _, id := range sortedKeys(st.auths) {
		if v := st.auths[id]; v.tenantID == tid && keep(v) {
			out = append(out, v.clone())
		}
	}
	return out
}

func (st *state) listLinks(tid int64, keep func(*ApplicationAuthentication) bool) []ApplicationAuthentication {
	var out []ApplicationAuthentication
	for _, id := range sortedKeys(st.links) {
		if v := st.links[id]; v.tenantID == tid && keep(v) {
			out = append(out, *v)
		}
	}
	return out
}

// Inserts allocate the id and stamp the tenant.

func (st *state) insertSource(t *tenant, v Source) *Source {
	v.ID, v.tenantID, v.OrgID, v.AccountNumber = st.nextSource, t.id, t.orgID, t.account
	st.nextSource++
	st.sources[v.ID] = &v
	return &v
}

func (st *state) insertApp(t *tenant, v Application) *Application {
	v.ID, v.tenantID, v.OrgID, v.AccountNumber = st.nextApp, t.id, t.orgID, t.account
	st.nextApp++
	st.apps[v.ID] = &v
	return &v
}

func (st *state) insertAuth(t *tenant, v Authentication) *Authentication {
	v.ID, v.tenantID, v.OrgID, v.AccountNumber = st.nextAuth, t.id, t.orgID, t.account
	st.nextAuth++
	st.auths[v.ID] = &v
	return &v
}

func (st *state) insertLink(t *tenant, v ApplicationAuthentication) *ApplicationAuthentication {
	v.ID, v.tenantID, v.OrgID, v.AccountNumber = st.nextLink, t.id, t.orgID, t.account
	st.nextLink++
	st.links[v.ID] = &v
	return &v
}

// removed is what a cascading delete took away, in the order the real
// service raises the destroy events.
type removed struct {
	links   []ApplicationAuthentication
	apps    []Application
	sources []Source
	auths   []Authentication
}

// removeApps deletes the applications, their links and the authentications
// that belong to them.
func (st *state) removeApps(tid int64, appIDs []int64, out *removed) {
	isApp := map[int64]bool{}
	for _, id := range appIDs {
		isApp[id] = true
	}
	for _, id := range sortedKeys(st.links) {
		if l := st.links[id]; l.tenantID == tid && isApp[l.ApplicationID] {
			out.links = append(out.links, *l)
			delete(st.links, id)
		}
	}
	for _, id := range appIDs {
		if a, ok := st.apps[id]; ok {
			out.apps = append(out.apps, a.clone())
			delete(st.apps, id)
		}
	}
	st.removeAuths(tid, func(a *Authentication) bool {
		return a.ResourceType == resourceApplication && isApp[a.ResourceID]
	}, out)
}

// removeAuths deletes matching authentications. Their links go with them
// without events, like the database's cascade in the real service.
func (st *state) removeAuths(tid int64, match func(*Authentication) bool, out *removed) {
	for _, id := range sortedKeys(st.auths) {
		a := st.auths[id]
		if a.tenantID != tid || !match(a) {
			continue
		}
		out.auths = append(out.auths, a.clone())
		delete(st.auths, id)
		for lid, l := range st.links {
			if l.AuthenticationID == id {
				delete(st.links, lid)
			}
		}
	}
}
