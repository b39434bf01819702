package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cloudoreg/cloudoreg/processor/internal/arn"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// world is an in-memory Sources, STS, RHSM, claim store and status topic
// behind the Reconciler's interfaces. Its state behaves like the real
// systems (claims like the KV store, registrations like RHSM); errors can be
// injected per call. Every call is recorded in order.
type world struct {
	typeID string
	// sourceApps: source id -> applications; a missing source is a 404.
	sourceApps map[string][]sources.Application
	// appAuths: application id -> authentications; missing is an empty
	// list. Like Sources' list it is built from the authentications' own
	// resource fields, so it is not changed when a link goes.
	appAuths map[string][]sources.Authentication
	// links: the link table, which alone says what is attached.
	links []sources.Link
	// auths: authentication id -> authentication with secret; missing is a 404.
	auths map[string]sources.Authentication

	// claims: account id -> claim; bySource: source id -> account id.
	claims   map[string]Claim
	bySource map[string]string

	// registrations: account id -> who holds it at RHSM.
	registrations map[string]registration

	reports []report
	calls   []string

	// Injected failures: the next calls of a method (by name) fail with
	// these errors, in order; nil entries let a call through.
	fail map[string][]error
	// verify decides the verifier's answer for a role.
	verify func(role arn.Role, externalID string) error
}

type registration struct{ org, source string }

type report struct {
	m   work.Message
	msg status.Message
}

func newWorld() *world {
	return &world{
		typeID:        "5",
		sourceApps:    map[string][]sources.Application{},
		appAuths:      map[string][]sources.Authentication{},
		auths:         map[string]sources.Authentication{},
		claims:        map[string]Claim{},
		bySource:      map[string]string{},
		registrations: map[string]registration{},
		fail:          map[string][]error{},
	}
}

func (w *world) reconciler() *Reconciler {
	return &Reconciler{Sources: w, Verifier: w, Registry: w, Claims: w, Reporter: w}
}

func (w *world) record(format string, args ...any) {
	w.calls = append(w.calls, fmt.Sprintf(format, args...))
}

// injected pops the next injected error of method.
func (w *world) injected(method string) error {
	q := w.fail[method]
	if len(q) == 0 {
		return nil
	}
	w.fail[method] = q[1:]
	return q[0]
}

// failNext makes the next calls of method fail with errs.
func (w *world) failNext(method string, errs ...error) {
	w.fail[method] = append(w.fail[method], errs...)
}

// callsTo lists the recorded calls whose name starts with prefix.
func (w *world) callsTo(prefix string) []string {
	var out []string
	for _, c := range w.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (w *world) index(call string) int { return slices.Index(w.calls, call) }

func notFound(what string) error { return fmt.Errorf("GET %s: %w", what, failure.ErrNotFound) }

// Sources.

func (w *world) CloudMeterTypeID(_ context.Context, t event.Tenant) (string, error) {
	w.record("Sources.CloudMeterTypeID")
	if err := w.injected("CloudMeterTypeID"); err != nil {
		return "", err
	}
	return w.typeID, nil
}

func (w *world) SourceApplications(_ context.Context, t event.Tenant, sourceID string) ([]sources.Application, error) {
	w.record("Sources.SourceApplications %s org=%s account=%s", sourceID, t.OrgID, t.AccountNumber)
	if err := w.injected("SourceApplications"); err != nil {
		return nil, err
	}
	apps, ok := w.sourceApps[sourceID]
	if !ok {
		return nil, notFound("/sources/" + sourceID + "/applications")
	}
	return apps, nil
}

func (w *world) ApplicationAuthentications(_ context.Context, t event.Tenant, appID string) ([]sources.Authentication, error) {
	w.record("Sources.ApplicationAuthentications %s", appID)
	if err := w.injected("ApplicationAuthentications"); err != nil {
		return nil, err
	}
	return w.appAuths[appID], nil
}

func (w *world) Links(_ context.Context, t event.Tenant, by sources.LinkFilter, id string) ([]sources.Link, error) {
	w.record("Sources.Links %s=%s", by, id)
	if err := w.injected("Links"); err != nil {
		return nil, err
	}
	var out []sources.Link
	for _, l := range w.links {
		if (by == sources.LinksOfApplication && l.ApplicationID == id) || (by == sources.LinksOfAuthentication && l.AuthenticationID == id) {
			out = append(out, l)
		}
	}
	return out, nil
}

// link attaches an authentication to an application.
func (w *world) link(appID, authID string) {
	w.links = append(w.links, sources.Link{ID: "3" + authID, ApplicationID: appID, AuthenticationID: authID})
}

// unlink is DELETE /application_authentications/{id}: the link goes, the
// authentication stays, listed under the application.
func (w *world) unlink(appID string) {
	w.links = slices.DeleteFunc(w.links, func(l sources.Link) bool { return l.ApplicationID == appID })
}

// deleteAuthentication is DELETE /authentications/{id}: its links go by
// the database's cascade.
func (w *world) deleteAuthentication(id string) {
	delete(w.auths, id)
	for app, auths := range w.appAuths {
		w.appAuths[app] = slices.DeleteFunc(auths, func(a sources.Authentication) bool { return a.ID == id })
	}
	w.links = slices.DeleteFunc(w.links, func(l sources.Link) bool { return l.AuthenticationID == id })
}

func (w *world) AuthenticationWithSecret(_ context.Context, t event.Tenant, id string) (sources.Authentication, error) {
	w.record("Sources.AuthenticationWithSecret %s", id)
	if err := w.injected("AuthenticationWithSecret"); err != nil {
		return sources.Authentication{}, err
	}
	a, ok := w.auths[id]
	if !ok {
		return sources.Authentication{}, notFound("/authentications/" + id)
	}
	return a, nil
}

// Verifier.

func (w *world) Verify(_ context.Context, role arn.Role, externalID string) error {
	w.record("Verifier.Verify %s %s ext=%s", role.Raw, role.AccountID, externalID)
	if err := w.injected("Verify"); err != nil {
		return err
	}
	if w.verify != nil {
		return w.verify(role, externalID)
	}
	return nil
}

// Registry: RHSM holds one registration per AWS account.

func (w *world) Register(_ context.Context, orgID, accountID, sourceID string) error {
	w.record("Registry.Register org=%s account=%s source=%s", orgID, accountID, sourceID)
	if err := w.injected("Register"); err != nil {
		return err
	}
	if _, ok := w.registrations[accountID]; ok {
		return fmt.Errorf("rhsm: 409: %w", failure.ErrConflict)
	}
	w.registrations[accountID] = registration{orgID, sourceID}
	return nil
}

func (w *world) Remove(_ context.Context, orgID, sourceID string) error {
	w.record("Registry.Remove org=%s source=%s", orgID, sourceID)
	if err := w.injected("Remove"); err != nil {
		return err
	}
	for acct, r := range w.registrations {
		if r.org == orgID && r.source == sourceID {
			delete(w.registrations, acct)
		}
	}
	return nil
}

func (w *world) Registered(_ context.Context, orgID, accountID, sourceID string) (bool, error) {
	w.record("Registry.Registered org=%s account=%s source=%s", orgID, accountID, sourceID)
	if err := w.injected("Registered"); err != nil {
		return false, err
	}
	r, ok := w.registrations[accountID]
	return ok && r == registration{orgID, sourceID}, nil
}

// Claims: the semantics of the KV store (processor/internal/claims).

func (w *world) Claim(_ context.Context, c Claim) error {
	w.record("Claims.Claim source=%s account=%s", c.SourceID, c.AccountID)
	if err := w.injected("Claim"); err != nil {
		return err
	}
	if owner, ok := w.claims[c.AccountID]; ok && owner.SourceID != c.SourceID {
		return &ClaimedError{Owner: owner}
	}
	w.claims[c.AccountID] = c
	if held, ok := w.bySource[c.SourceID]; ok && held != c.AccountID {
		if w.claims[held].SourceID == c.SourceID {
			delete(w.claims, held)
		}
	}
	w.bySource[c.SourceID] = c.AccountID
	return nil
}

// otherOrg is ErrOtherOrg when the source's claim is not orgID's.
func (w *world) otherOrg(orgID, sourceID string) error {
	if acct, ok := w.bySource[sourceID]; ok && w.claims[acct].SourceID == sourceID && w.claims[acct].OrgID != orgID {
		return ErrOtherOrg
	}
	return nil
}

func (w *world) Release(_ context.Context, orgID, sourceID string) error {
	w.record("Claims.Release source=%s", sourceID)
	if err := w.injected("Release"); err != nil {
		return err
	}
	if err := w.otherOrg(orgID, sourceID); err != nil {
		return err
	}
	if acct, ok := w.bySource[sourceID]; ok {
		if w.claims[acct].SourceID == sourceID {
			delete(w.claims, acct)
		}
		delete(w.bySource, sourceID)
	}
	return nil
}

func (w *world) Account(_ context.Context, orgID, sourceID string) (string, error) {
	w.record("Claims.Account source=%s", sourceID)
	if err := w.injected("Account"); err != nil {
		return "", err
	}
	if err := w.otherOrg(orgID, sourceID); err != nil {
		return "", err
	}
	return w.bySource[sourceID], nil
}

// Reporter.

func (w *world) Report(_ context.Context, m work.Message, msg status.Message) error {
	w.record("Reporter.Report %s %s", msg.ResourceID, msg.Status)
	if err := w.injected("Report"); err != nil {
		return err
	}
	w.reports = append(w.reports, report{m, msg})
	return nil
}

// transient is a classified transient failure of target.
func transient(target string) error {
	return failure.Transient(target, fmt.Errorf("%s: 503 Service Unavailable", target))
}
