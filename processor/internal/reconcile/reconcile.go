// Package reconcile decides what a source's registration must be, from the
// current state in Sources, and makes RHSM and the customer-visible status
// match it. A work message is a trigger, not a command: duplicates, re-emitted
// creates and late events all converge to the same end state.
//
// It holds the business rules only. Every dependency is an interface over
// plain values; transports (JetStream, Kafka, HTTP) live elsewhere.
package reconcile

import (
	"context"
	"errors"
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

// CloudMeterAuthType is the only authentication type Cloudoreg verifies.
const CloudMeterAuthType = "cloud-meter-arn"

// Sources reads the current state of a source.
type Sources interface {
	CloudMeterTypeID(ctx context.Context, t event.Tenant) (string, error)
	SourceApplications(ctx context.Context, t event.Tenant, sourceID string) ([]sources.Application, error)
	ApplicationAuthentications(ctx context.Context, t event.Tenant, appID string) ([]sources.Authentication, error)
	Links(ctx context.Context, t event.Tenant, by sources.LinkFilter, id string) ([]sources.Link, error)
	AuthenticationWithSecret(ctx context.Context, t event.Tenant, id string) (sources.Authentication, error)
}

// Verifier proves that Cloudoreg can assume the customer's role.
type Verifier interface {
	Verify(ctx context.Context, role arn.Role, externalID string) error
}

// Registry is RHSM's Cloud Access API. Register wraps failure.ErrConflict
// when RHSM answers 409 (the account is registered already, by someone).
type Registry interface {
	Register(ctx context.Context, orgID, accountID, sourceID string) error
	// Remove deletes every registration of the source; gone already is success.
	Remove(ctx context.Context, orgID, sourceID string) error
	// Registered reports whether the org holds accountID for sourceID.
	Registered(ctx context.Context, orgID, accountID, sourceID string) (bool, error)
}

// Claim is a source's ownership of an AWS account.
type Claim struct {
	AccountID     string `json:"account_id"`
	ARN           string `json:"arn"`
	SourceID      string `json:"source_id"`
	OrgID         string `json:"org_id"`
	AccountNumber string `json:"account_number,omitempty"`
}

// ClaimedError says another source owns the account.
type ClaimedError struct{ Owner Claim }

func (e *ClaimedError) Error() string {
	return "AWS account " + e.Owner.AccountID + " is claimed by source " + e.Owner.SourceID
}

// ErrOtherOrg says the source's claim belongs to another organization than
// the work's tenant: only a reconcile under the owning org may change it.
var ErrOtherOrg = failure.Permanent(status.CG1002, "claims", errors.New("the source's account claim belongs to another organization"))

// Claims keeps one AWS account to one source at a time, atomically across
// processors. A claim records its org; calls under another org return
// ErrOtherOrg and change nothing.
type Claims interface {
	// Claim makes c.SourceID the owner of c.AccountID (and frees the
	// account the source held before), or returns *ClaimedError.
	Claim(ctx context.Context, c Claim) error
	// Release drops whatever the source owns.
	Release(ctx context.Context, orgID, sourceID string) error
	// Account is the AWS account the source owns, "" when none (a source
	// that owns one may be registered at RHSM).
	Account(ctx context.Context, orgID, sourceID string) (string, error)
}

// Reporter publishes an availability status for the work's tenant.
type Reporter interface {
	Report(ctx context.Context, m work.Message, msg status.Message) error
}

// State is where a reconcile left a source.
type State string

// States a reconcile ends in.
const (
	StateAvailable   State = "available"
	StateUnavailable State = "unavailable"
	StateRemoved     State = "removed"  // no cloud-meter application or credential: nothing registered
	StatePaused      State = "paused"   // left as it was, nothing reported
	StateNotOurs     State = "not_ours" // no cloud-meter (never registered), or another application's credential destroyed
	// The source's claim is another org's (Sources answered the work's
	// tenant 404): nothing changed, nothing reported.
	StateOtherOrg State = "other_org"
)

// Outcome is the result of one reconcile.
type Outcome struct {
	State         State
	Code          status.Code // for StateUnavailable
	ApplicationID string
	AccountID     string
	Cause         error // the permanent failure behind Code, for logs
}

// Reconciler holds the dependencies.
type Reconciler struct {
	Sources  Sources
	Verifier Verifier
	Registry Registry
	Claims   Claims
	Reporter Reporter
}

// Reconcile brings one source in line. Permanent failures of the customer's
// setup are reported to the customer and returned as an Outcome. A returned
// error is transient (failure.IsTransient: retry later) or carries the
// reason to dead-letter the message with (failure.ReasonOf).
func (r *Reconciler) Reconcile(ctx context.Context, m work.Message) (Outcome, error) {
	app, found, err := r.cloudMeterApplication(ctx, m)
	if err != nil {
		return Outcome{}, err
	}
	if !found {
		return r.removeIfRegistered(ctx, m)
	}
	if m.Kind == string(event.AuthDestroy) && m.ApplicationID != app.ID {
		// Another application's (or the source's) credential is gone; the
		// cloud-meter one is untouched and nobody asked about it.
		return Outcome{State: StateNotOurs}, nil
	}
	authID, err := r.attachedAuthentication(ctx, m, app)
	if err != nil {
		return Outcome{}, err
	}
	if authID == "" {
		// The credential was deleted or detached: nothing may stay
		// registered, paused or not, and the customer sees it go.
		if err := r.removeAndReport(ctx, m, status.RemovedMessage(app.ID)); err != nil {
			return Outcome{}, err
		}
		return Outcome{State: StateRemoved, ApplicationID: app.ID}, nil
	}
	if app.Paused() {
		return Outcome{State: StatePaused, ApplicationID: app.ID}, nil
	}
	account, err := r.verifyAndRegister(ctx, m, authID)
	if failure.ForCustomer(err) {
		return r.unavailable(ctx, m, app.ID, err)
	}
	if err != nil {
		return Outcome{}, err
	}
	if err := r.Reporter.Report(ctx, m, status.AvailableMessage(app.ID)); err != nil {
		return Outcome{}, err
	}
	return Outcome{State: StateAvailable, ApplicationID: app.ID, AccountID: account}, nil
}

// cloudMeterApplication finds the source's cloud-meter application.
func (r *Reconciler) cloudMeterApplication(ctx context.Context, m work.Message) (sources.Application, bool, error) {
	typeID, err := r.Sources.CloudMeterTypeID(ctx, m.Tenant)
	if err != nil {
		return sources.Application{}, false, err
	}
	apps, err := r.Sources.SourceApplications(ctx, m.Tenant, m.SourceID)
	if errors.Is(err, failure.ErrNotFound) {
		return sources.Application{}, false, nil
	}
	if err != nil {
		return sources.Application{}, false, err
	}
	for _, a := range apps {
		if a.ApplicationTypeID == typeID {
			return a, true, nil
		}
	}
	return sources.Application{}, false, nil
}

// attachedAuthentication is the credential the application uses, "" when
// none is attached. The link table decides, whatever the event: the
// application's authentication list still shows a credential whose link was
// deleted. Of several attached credentials the cloud-meter-arn one is
// picked, else the first, which the checks then report (CG2001).
func (r *Reconciler) attachedAuthentication(ctx context.Context, m work.Message, app sources.Application) (string, error) {
	links, err := r.Sources.Links(ctx, m.Tenant, sources.LinksOfApplication, app.ID)
	if errors.Is(err, failure.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	switch len(links) {
	case 0:
		return "", nil
	case 1:
		return links[0].AuthenticationID, nil
	}
	auths, err := r.Sources.ApplicationAuthentications(ctx, m.Tenant, app.ID)
	if err != nil && !errors.Is(err, failure.ErrNotFound) {
		return "", err
	}
	for _, a := range auths {
		attached := slices.ContainsFunc(links, func(l sources.Link) bool { return l.AuthenticationID == a.ID })
		if attached && a.AuthType == CloudMeterAuthType {
			return a.ID, nil
		}
	}
	return links[0].AuthenticationID, nil
}

// verifyAndRegister checks the authentication, proves the role, claims the
// account and registers it. It returns the AWS account id.
func (r *Reconciler) verifyAndRegister(ctx context.Context, m work.Message, authID string) (string, error) {
	auth, err := r.Sources.AuthenticationWithSecret(ctx, m.Tenant, authID)
	if errors.Is(err, failure.ErrNotFound) {
		return "", failure.Permanent(status.CG2000, "sources", fmt.Errorf("authentication %s not found", authID))
	}
	if err != nil {
		return "", err
	}
	role, err := checkAuthentication(auth)
	if err != nil {
		return "", err
	}
	if err := r.Verifier.Verify(ctx, role, auth.Extra.ExternalID); err != nil {
		return "", err
	}
	if m.Tenant.OrgID == "" {
		return "", failure.Permanent(status.CR4001, "rhsm", errors.New("the tenant has no org id"))
	}
	held, err := r.Claims.Account(ctx, m.Tenant.OrgID, m.SourceID)
	if err != nil {
		return "", err
	}
	if held != "" && held != role.AccountID {
		// The customer pointed the source at another AWS account: the old
		// registration goes first. Until it is gone the claim does not
		// move, so a retry after a failure here removes it again.
		if err := r.Registry.Remove(ctx, m.Tenant.OrgID, m.SourceID); err != nil {
			return "", err
		}
	}
	claim := Claim{AccountID: role.AccountID, ARN: role.Raw, SourceID: m.SourceID, OrgID: m.Tenant.OrgID, AccountNumber: m.Tenant.AccountNumber}
	if err := r.claim(ctx, claim); err != nil {
		return "", err
	}
	return role.AccountID, r.register(ctx, claim)
}

// checkAuthentication applies the contract's checks (CG2002, CG2001, CG2004,
// CG1004) and returns the parsed role.
func checkAuthentication(a sources.Authentication) (arn.Role, error) {
	if a.ResourceType != "Application" {
		return arn.Role{}, failure.Permanent(status.CG2002, "sources", fmt.Errorf("authentication resource type is %q", a.ResourceType))
	}
	if a.AuthType != CloudMeterAuthType {
		return arn.Role{}, failure.Permanent(status.CG2001, "sources", fmt.Errorf("authentication type is %q", a.AuthType))
	}
	// Old records kept the ARN in the password field.
	text := strings.TrimSpace(a.Username)
	if text == "" {
		text = strings.TrimSpace(a.Password)
	}
	if text == "" {
		return arn.Role{}, failure.Permanent(status.CG2004, "sources", errors.New("no ARN in username or password"))
	}
	role, err := arn.ParseRole(text)
	if err != nil {
		return arn.Role{}, failure.Permanent(status.CG1004, "arn", errors.New("not an IAM role ARN with a 12-digit account"))
	}
	return role, nil
}

// claim takes ownership of the account. An owner whose source is gone from
// Sources (a delete Cloudoreg never saw) loses its claim instead of blocking
// the account for ever.
func (r *Reconciler) claim(ctx context.Context, c Claim) error {
	err := r.Claims.Claim(ctx, c)
	var claimed *ClaimedError
	if !errors.As(err, &claimed) {
		return err
	}
	owner := claimed.Owner
	_, err = r.Sources.SourceApplications(ctx, event.Tenant{OrgID: owner.OrgID, AccountNumber: owner.AccountNumber}, owner.SourceID)
	if errors.Is(err, failure.ErrNotFound) {
		// Undo the owner's registration too, as its destroy would have:
		// RHSM would otherwise keep the account blocked (409) for ever.
		if owner.OrgID != "" {
			if err := r.Registry.Remove(ctx, owner.OrgID, owner.SourceID); err != nil {
				return err
			}
		}
		if err := r.Claims.Release(ctx, owner.OrgID, owner.SourceID); err != nil {
			return err
		}
		return r.Claims.Claim(ctx, c)
	}
	if err != nil {
		return err
	}
	if owner.ARN == c.ARN {
		return failure.Permanent(status.CG1001, "claims", fmt.Errorf("ARN already used by source %s", owner.SourceID))
	}
	return failure.Permanent(status.CG1002, "claims", fmt.Errorf("AWS account already used by source %s", owner.SourceID))
}

// register registers the account; a 409 is success when RHSM shows this org
// already holds it for this source, and CG1002 otherwise (another org owns it).
func (r *Reconciler) register(ctx context.Context, c Claim) error {
	err := r.Registry.Register(ctx, c.OrgID, c.AccountID, c.SourceID)
	if !errors.Is(err, failure.ErrConflict) {
		return err
	}
	ours, err := r.Registry.Registered(ctx, c.OrgID, c.AccountID, c.SourceID)
	if err != nil {
		return err
	}
	if ours {
		return nil
	}
	// Another org (or another source of this org) holds it at RHSM; give
	// the claim back so the account stays free in Cloudoreg's view.
	if err := r.Claims.Release(ctx, c.OrgID, c.SourceID); err != nil {
		return err
	}
	return failure.Permanent(status.CG1002, "rhsm", errors.New("RHSM holds the AWS account for another organization or source"))
}

// unavailable removes any registration the source held (its ownership is no
// longer proven) and reports the failure's code.
func (r *Reconciler) unavailable(ctx context.Context, m work.Message, appID string, cause error) (Outcome, error) {
	code := failure.CodeOf(cause)
	if err := r.removeAndReport(ctx, m, status.UnavailableMessage(appID, code)); err != nil {
		return Outcome{}, err
	}
	return Outcome{State: StateUnavailable, Code: code, ApplicationID: appID, Cause: cause}, nil
}

// removeAndReport makes sure nothing stays registered before the customer
// is told msg, so a failure in between is retried from the same state.
// Release drops only what this source owns, never a contested owner's claim.
func (r *Reconciler) removeAndReport(ctx context.Context, m work.Message, msg status.Message) error {
	if _, err := r.remove(ctx, m); err != nil {
		return err
	}
	return r.Reporter.Report(ctx, m, msg)
}

// removeIfRegistered handles a source without a cloud-meter application:
// on a destroy, or when the source holds an account, make sure nothing stays
// registered; otherwise it is another team's source and needs no call.
// Sources answers 404 to a tenant that does not own the source too, so a
// claim of another org is left alone.
func (r *Reconciler) removeIfRegistered(ctx context.Context, m work.Message) (Outcome, error) {
	held, err := r.Claims.Account(ctx, m.Tenant.OrgID, m.SourceID)
	if errors.Is(err, ErrOtherOrg) {
		return Outcome{State: StateOtherOrg}, nil
	}
	if err != nil {
		return Outcome{}, err
	}
	if held == "" && !event.Type(m.Kind).IsDestroy() {
		return Outcome{State: StateNotOurs}, nil
	}
	return r.remove(ctx, m)
}

func (r *Reconciler) remove(ctx context.Context, m work.Message) (Outcome, error) {
	if m.Tenant.OrgID != "" {
		if err := r.Registry.Remove(ctx, m.Tenant.OrgID, m.SourceID); err != nil {
			return Outcome{}, err
		}
	}
	if err := r.Claims.Release(ctx, m.Tenant.OrgID, m.SourceID); err != nil {
		return Outcome{}, err
	}
	return Outcome{State: StateRemoved}, nil
}
