package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/processor/internal/arn"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

const (
	org      = "1234567"
	src      = "11"
	app      = "21"
	otherApp = "20"
	auth     = "41"
	roleARN  = "arn:aws:iam::123456789012:role/cloud-meter-role"
	account  = "123456789012"
	ext      = "5b1f7a52-3f0e-4c1e-9d0b-6d2c8a1e4f00"

	otherOrg = "7654321"
	otherSrc = "12"
)

var tenant = event.Tenant{OrgID: org}

func cloudMeterAuth(id, username string) sources.Authentication {
	a := sources.Authentication{ID: id, AuthType: CloudMeterAuthType, Username: username, ResourceType: "Application", ResourceID: app}
	a.Extra.ExternalID = ext
	return a
}

// setup is source 11 with another team's application 20 and the cloud-meter
// application 21, whose cloud-meter-arn authentication 41 is valid.
func setup() *world {
	w := newWorld()
	w.sourceApps[src] = []sources.Application{
		{ID: otherApp, SourceID: src, ApplicationTypeID: "3"},
		{ID: app, SourceID: src, ApplicationTypeID: "5"},
	}
	a := cloudMeterAuth(auth, roleARN)
	w.appAuths[app] = []sources.Authentication{a}
	w.auths[auth] = a
	w.link(app, auth)
	return w
}

// msg is the work message the listener makes of an event of kind.
func msg(kind string) work.Message {
	m := work.Message{Kind: kind, SourceID: src, Tenant: tenant, Identity: "eyJpZGVudGl0eSI6e319", Origin: "platform.sources.event-stream/0/7"}
	switch event.Type(kind) {
	case event.AppAuthCreate, event.AppAuthDestroy, event.AuthUpdate, event.AuthDestroy:
		m.ApplicationID, m.AuthenticationID = app, auth
	case event.AppPause, event.AppUnpause, event.AppDestroy:
		m.ApplicationID = app
	}
	return m
}

var (
	create  = string(event.AppAuthCreate)
	linkDel = string(event.AppAuthDestroy)
	update  = string(event.AuthUpdate)
	authDel = string(event.AuthDestroy)
	pause   = string(event.AppPause)
	unpause = string(event.AppUnpause)
	appDel  = string(event.AppDestroy)
	srcDel  = string(event.SourceDestroy)
)

func run(t *testing.T, w *world, m work.Message) (Outcome, error) {
	t.Helper()
	return w.reconciler().Reconcile(context.Background(), m)
}

// registered brings the source to available (claimed and registered) and
// forgets the calls made to get there.
func registered(t *testing.T, w *world) {
	t.Helper()
	o, err := run(t, w, msg(create))
	if err != nil || o.State != StateAvailable {
		t.Fatalf("setup: %+v, %v", o, err)
	}
	w.calls, w.reports = nil, nil
}

func wantCalls(t *testing.T, w *world, want ...string) {
	t.Helper()
	if !slices.Equal(w.calls, want) {
		t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(w.calls, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantNoCalls(t *testing.T, w *world, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if c := w.callsTo(p); len(c) > 0 {
			t.Errorf("unexpected calls %v", c)
		}
	}
}

func wantReports(t *testing.T, w *world, m work.Message, want ...status.Message) {
	t.Helper()
	if len(w.reports) != len(want) {
		t.Fatalf("reports %+v, want %+v", w.reports, want)
	}
	for i, r := range w.reports {
		if r.msg != want[i] {
			t.Errorf("report %d: %+v, want %+v", i, r.msg, want[i])
		}
		if r.m != m {
			t.Errorf("report %d for work %+v, want %+v", i, r.m, m)
		}
	}
}

func wantRegistered(t *testing.T, w *world, regs map[string]registration) {
	t.Helper()
	if len(w.registrations) != len(regs) {
		t.Errorf("RHSM holds %v, want %v", w.registrations, regs)
		return
	}
	for a, r := range regs {
		if w.registrations[a] != r {
			t.Errorf("RHSM holds %v, want %v", w.registrations, regs)
		}
	}
}

func wantClaims(t *testing.T, w *world, bySource map[string]string) {
	t.Helper()
	if len(w.bySource) != len(bySource) || len(w.claims) != len(bySource) {
		t.Errorf("claims %v / %v, want %v", w.bySource, w.claims, bySource)
		return
	}
	for s, a := range bySource {
		if w.bySource[s] != a || w.claims[a].SourceID != s {
			t.Errorf("claims %v / %v, want %v", w.bySource, w.claims, bySource)
		}
	}
}

func TestAvailable(t *testing.T) {
	for _, kind := range []string{create, update, unpause, work.KindCheck} {
		t.Run(kind, func(t *testing.T) {
			w := setup()
			m := msg(kind)
			o, err := run(t, w, m)
			if err != nil {
				t.Fatal(err)
			}
			if o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
				t.Errorf("outcome %+v", o)
			}
			wantReports(t, w, m, status.AvailableMessage(app))
			if w.reports[0].msg.Error != "" || w.reports[0].msg.Status != status.Available {
				t.Errorf("available message %+v", w.reports[0].msg)
			}
			wantCalls(t, w,
				"Sources.CloudMeterTypeID",
				"Sources.SourceApplications 11 org=1234567 account=",
				"Sources.Links application_id=21",
				"Sources.AuthenticationWithSecret 41",
				"Verifier.Verify "+roleARN+" "+account+" ext="+ext,
				"Claims.Account source=11",
				"Claims.Claim source=11 account="+account,
				"Registry.Register org=1234567 account="+account+" source=11",
				"Reporter.Report 21 available",
			)
			wantRegistered(t, w, map[string]registration{account: {org, src}})
			wantClaims(t, w, map[string]string{src: account})
			if c := w.claims[account]; c != (Claim{AccountID: account, ARN: roleARN, SourceID: src, OrgID: org}) {
				t.Errorf("claim %+v", c)
			}
		})
	}
}

func TestAccountNumberKeptInClaim(t *testing.T) {
	w := setup()
	m := msg(create)
	m.Tenant.AccountNumber = "000111"
	if o, err := run(t, w, m); err != nil || o.State != StateAvailable {
		t.Fatalf("%+v, %v", o, err)
	}
	if c := w.claims[account]; c.OrgID != org || c.AccountNumber != "000111" {
		t.Errorf("claim %+v", c)
	}
}

// Duplicates and re-emitted creates converge: RHSM's 409 for our own
// registration is success.
func TestDuplicatesConverge(t *testing.T) {
	w := setup()
	for i, kind := range []string{create, create, update, work.KindCheck, create} {
		o, err := run(t, w, msg(kind))
		if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
			t.Fatalf("%d %s: %+v, %v", i, kind, o, err)
		}
	}
	if n := len(w.callsTo("Registry.Register ")); n != 5 {
		t.Errorf("%d registrations", n)
	}
	if n := len(w.callsTo("Registry.Registered org=1234567 account=" + account + " source=11")); n != 4 {
		t.Errorf("%d Registered checks", n)
	}
	wantNoCalls(t, w, "Registry.Remove", "Claims.Release")
	wantRegistered(t, w, map[string]registration{account: {org, src}})
	wantClaims(t, w, map[string]string{src: account})
	if len(w.reports) != 5 {
		t.Errorf("%d reports", len(w.reports))
	}
}

// A create of another application of the source does not name the
// cloud-meter authentication: the one attached to the cloud-meter
// application is verified.
func TestCreateOfAnotherApplication(t *testing.T) {
	w := setup()
	w.link(otherApp, "99")
	m := msg(create)
	m.ApplicationID, m.AuthenticationID = otherApp, "99"
	o, err := run(t, w, m)
	if err != nil || o.State != StateAvailable {
		t.Fatalf("%+v, %v", o, err)
	}
	if len(w.callsTo("Sources.Links application_id=21")) != 1 || len(w.callsTo("Sources.AuthenticationWithSecret 41")) != 1 {
		t.Errorf("calls %v", w.calls)
	}
	wantNoCalls(t, w, "Sources.AuthenticationWithSecret 99")
}

// Of several attached credentials the cloud-meter-arn one is verified; an
// authentication listed under the application but not attached is never
// picked.
func TestPicksTheAttachedCloudMeterAuthentication(t *testing.T) {
	w := setup()
	other := sources.Authentication{ID: "40", AuthType: "access_key_secret_key", ResourceType: "Application", ResourceID: app}
	detached := cloudMeterAuth("39", "arn:aws:iam::210987654321:role/detached")
	w.appAuths[app] = []sources.Authentication{detached, other, w.auths[auth]}
	w.auths["40"], w.auths["39"] = other, detached
	w.links = nil
	w.link(app, "40")
	w.link(app, auth)
	o, err := run(t, w, msg(work.KindCheck))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
		t.Fatalf("%+v, %v", o, err)
	}
	if len(w.callsTo("Sources.ApplicationAuthentications 21")) != 1 {
		t.Errorf("calls %v", w.calls)
	}
	wantNoCalls(t, w, "Sources.AuthenticationWithSecret 40", "Sources.AuthenticationWithSecret 39")
}

func TestSourceGoneIsRemoved(t *testing.T) {
	for _, kind := range []string{srcDel, appDel, linkDel} {
		t.Run(kind, func(t *testing.T) {
			w := setup()
			registered(t, w)
			delete(w.sourceApps, src) // Sources answers 404
			o, err := run(t, w, msg(kind))
			if err != nil || o != (Outcome{State: StateRemoved}) {
				t.Fatalf("%+v, %v", o, err)
			}
			wantCalls(t, w,
				"Sources.CloudMeterTypeID",
				"Sources.SourceApplications 11 org=1234567 account=",
				"Claims.Account source=11",
				"Registry.Remove org=1234567 source=11",
				"Claims.Release source=11",
			)
			wantReports(t, w, msg(kind))
			wantRegistered(t, w, nil)
			wantClaims(t, w, nil)
		})
	}
}

// A destroy removes even without a claim: RHSM's 404 is fine, and a
// registration Cloudoreg lost track of must not survive the source.
func TestDestroyWithoutClaimStillRemoves(t *testing.T) {
	w := setup()
	w.registrations[account] = registration{org, src}
	delete(w.sourceApps, src)
	o, err := run(t, w, msg(srcDel))
	if err != nil || o.State != StateRemoved {
		t.Fatalf("%+v, %v", o, err)
	}
	wantNoCalls(t, w, "Claims.Held", "Reporter")
	wantRegistered(t, w, nil)
}

func TestSourceGoneAndHeldIsRemoved(t *testing.T) {
	w := setup()
	registered(t, w)
	delete(w.sourceApps, src)
	o, err := run(t, w, msg(work.KindCheck))
	if err != nil || o != (Outcome{State: StateRemoved}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantCalls(t, w,
		"Sources.CloudMeterTypeID",
		"Sources.SourceApplications 11 org=1234567 account=",
		"Claims.Account source=11",
		"Registry.Remove org=1234567 source=11",
		"Claims.Release source=11",
	)
	wantReports(t, w, msg(work.KindCheck))
	wantRegistered(t, w, nil)
	wantClaims(t, w, nil)
}

func TestNotOurs(t *testing.T) {
	cases := map[string]func(w *world){
		"another team's source": func(w *world) {
			w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
		},
		"source without applications": func(w *world) { w.sourceApps[src] = nil },
		"source gone":                 func(w *world) { delete(w.sourceApps, src) },
	}
	for name, change := range cases {
		for _, kind := range []string{create, update, authDel, pause, unpause, work.KindCheck} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				w := setup()
				change(w)
				o, err := run(t, w, msg(kind))
				if err != nil || o != (Outcome{State: StateNotOurs}) {
					t.Fatalf("%+v, %v", o, err)
				}
				wantCalls(t, w,
					"Sources.CloudMeterTypeID",
					"Sources.SourceApplications 11 org=1234567 account=",
					"Claims.Account source=11",
				)
				if len(w.reports) != 0 {
					t.Errorf("reported %+v", w.reports)
				}
			})
		}
	}
}

func TestDestroyOfSourceWithoutCloudMeterRemoves(t *testing.T) {
	w := setup()
	w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
	o, err := run(t, w, msg(appDel))
	if err != nil || o != (Outcome{State: StateRemoved}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantCalls(t, w,
		"Sources.CloudMeterTypeID",
		"Sources.SourceApplications 11 org=1234567 account=",
		"Claims.Account source=11",
		"Registry.Remove org=1234567 source=11",
		"Claims.Release source=11",
	)
}

// The cloud-meter application was removed from a source that still exists
// (its destroy event was missed): the claim says something was registered.
func TestHeldClaimWithoutApplicationIsRemoved(t *testing.T) {
	w := setup()
	registered(t, w)
	w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
	o, err := run(t, w, msg(work.KindCheck))
	if err != nil || o != (Outcome{State: StateRemoved}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantNoCalls(t, w, "Reporter", "Verifier", "Registry.Register ")
	wantRegistered(t, w, nil)
	wantClaims(t, w, nil)
}

func TestPausedIsLeftAlone(t *testing.T) {
	for _, kind := range []string{pause, create, update, work.KindCheck} {
		t.Run(kind, func(t *testing.T) {
			w := setup()
			registered(t, w)
			paused := "2026-11-22 03:37:38 UTC"
			w.sourceApps[src][1].PausedAt = &paused
			o, err := run(t, w, msg(kind))
			if err != nil || o != (Outcome{State: StatePaused, ApplicationID: app}) {
				t.Fatalf("%+v, %v", o, err)
			}
			wantCalls(t, w, "Sources.CloudMeterTypeID", "Sources.SourceApplications 11 org=1234567 account=", "Sources.Links application_id=21")
			wantRegistered(t, w, map[string]registration{account: {org, src}})
			wantClaims(t, w, map[string]string{src: account})
		})
	}
	// An empty paused_at is not a pause.
	w := setup()
	empty := ""
	w.sourceApps[src][1].PausedAt = &empty
	if o, err := run(t, w, msg(unpause)); err != nil || o.State != StateAvailable {
		t.Fatalf("empty paused_at: %+v, %v", o, err)
	}
}

func TestUnavailable(t *testing.T) {
	cases := []struct {
		name   string
		kind   string
		change func(w *world)
		code   status.Code
		verify bool // whether STS is asked
	}{
		// Sources lists a link to an authentication it cannot find: its error.
		{"CG2000 attached authentication not found", create, func(w *world) { delete(w.auths, auth) }, status.CG2000, false},
		{"CG2000 on a check", work.KindCheck, func(w *world) { delete(w.auths, auth) }, status.CG2000, false},
		{"CG2002 resource type", update, func(w *world) {
			a := w.auths[auth]
			a.ResourceType = "Source"
			w.auths[auth] = a
		}, status.CG2002, false},
		{"CG2002 lower-case resource type", create, func(w *world) {
			a := w.auths[auth]
			a.ResourceType = "application"
			w.auths[auth] = a
		}, status.CG2002, false},
		{"CG2002 before CG2001", create, func(w *world) {
			a := w.auths[auth]
			a.ResourceType, a.AuthType = "Endpoint", "username_password"
			w.auths[auth] = a
		}, status.CG2002, false},
		{"CG2001 authtype", create, func(w *world) {
			a := w.auths[auth]
			a.AuthType = "access_key_secret_key"
			w.auths[auth] = a
		}, status.CG2001, false},
		{"CG2001 only other authentications attached", work.KindCheck, func(w *world) {
			other := sources.Authentication{ID: "42", AuthType: "arn", Username: roleARN, ResourceType: "Application"}
			w.appAuths[app] = append(w.appAuths[app], other)
			w.auths["42"] = other
			w.unlink(app)
			w.link(app, "42")
		}, status.CG2001, false},
		{"CG2001 of several attached", work.KindCheck, func(w *world) {
			for _, id := range []string{"42", "43"} {
				other := sources.Authentication{ID: id, AuthType: "arn", Username: roleARN, ResourceType: "Application"}
				w.appAuths[app] = append(w.appAuths[app], other)
				w.auths[id] = other
			}
			w.unlink(app)
			w.link(app, "42")
			w.link(app, "43")
		}, status.CG2001, false},
		{"CG2004 empty", create, func(w *world) {
			a := w.auths[auth]
			a.Username, a.Password = "", ""
			w.auths[auth] = a
		}, status.CG2004, false},
		{"CG2004 blank", create, func(w *world) {
			a := w.auths[auth]
			a.Username, a.Password = "  \t", "\n"
			w.auths[auth] = a
		}, status.CG2004, false},
		{"CG1004 not an ARN", create, func(w *world) {
			a := w.auths[auth]
			a.Username = "not-an-arn"
			w.auths[auth] = a
		}, status.CG1004, false},
		{"CG1004 11-digit account", update, func(w *world) {
			a := w.auths[auth]
			a.Username = "arn:aws:iam::12345678901:role/x"
			w.auths[auth] = a
		}, status.CG1004, false},
		{"CG1004 username wins over a valid password", create, func(w *world) {
			a := w.auths[auth]
			a.Username, a.Password = "arn:aws:s3:::bucket", roleARN
			w.auths[auth] = a
		}, status.CG1004, false},
		{"CG3002 verifier", create, func(w *world) {
			w.failNext("Verify", failure.Permanent(status.CG3002, "sts", errors.New("AssumeRole: AccessDenied")))
		}, status.CG3002, true},
		{"CG3003 verifier", unpause, func(w *world) {
			w.failNext("Verify", failure.Permanent(status.CG3003, "sts", errors.New("GetCallerIdentity: AccessDenied")))
		}, status.CG3003, true},
		{"CG3000 verifier", update, func(w *world) {
			w.failNext("Verify", failure.Permanent(status.CG3000, "sts", errors.New("ValidationError")))
		}, status.CG3000, true},
		{"CG1004 verifier", create, func(w *world) {
			w.failNext("Verify", failure.Permanent(status.CG1004, "arn", errors.New("invalid")))
		}, status.CG1004, true},
		{"CR4000 RHSM refused", create, func(w *world) {
			w.failNext("Register", failure.Permanent(status.CR4000, "rhsm", errors.New("400 Bad Request")))
		}, status.CR4000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := setup()
			registered(t, w) // a failing source loses what it held
			tc.change(w)
			m := msg(tc.kind)
			o, err := run(t, w, m)
			if err != nil {
				t.Fatal(err)
			}
			if o.State != StateUnavailable || o.Code != tc.code || o.ApplicationID != app || o.AccountID != "" {
				t.Errorf("outcome %+v", o)
			}
			if o.Cause == nil || failure.CodeOf(o.Cause) != tc.code || failure.IsTransient(o.Cause) {
				t.Errorf("cause %v", o.Cause)
			}
			wantReports(t, w, m, status.UnavailableMessage(app, tc.code))
			if got, want := w.reports[0].msg.Error, "Could not enable cloud metering. Error code "+string(tc.code)+". "; !strings.HasPrefix(got, want) || got != tc.code.Text() {
				t.Errorf("error text %q", got)
			}
			if got := len(w.callsTo("Verifier")) > 0; got != tc.verify {
				t.Errorf("verifier asked: %v", got)
			}
			// The registration goes before the customer is told.
			rm, rel, rep := w.index("Registry.Remove org=1234567 source=11"), w.index("Claims.Release source=11"), w.index("Reporter.Report 21 unavailable")
			if rm < 0 || rel < 0 || rep < 0 || rm > rep || rel > rep {
				t.Errorf("calls %v", w.calls)
			}
			wantRegistered(t, w, nil)
			wantClaims(t, w, nil)
		})
	}
}

func TestUnavailableOfAFreshSource(t *testing.T) {
	w := setup()
	w.failNext("Verify", failure.Permanent(status.CG3002, "sts", errors.New("AccessDenied")))
	m := msg(create)
	o, err := run(t, w, m)
	if err != nil || o.State != StateUnavailable || o.Code != status.CG3002 {
		t.Fatalf("%+v, %v", o, err)
	}
	wantCalls(t, w,
		"Sources.CloudMeterTypeID",
		"Sources.SourceApplications 11 org=1234567 account=",
		"Sources.Links application_id=21",
		"Sources.AuthenticationWithSecret 41",
		"Verifier.Verify "+roleARN+" "+account+" ext="+ext,
		"Registry.Remove org=1234567 source=11",
		"Claims.Release source=11",
		"Reporter.Report 21 unavailable",
	)
	// The exact text the customer sees, as in the fixture status-unavailable-cg3002.json.
	const text = "Could not enable cloud metering. Error code CG3002. An AccessDenied error was received when using the ARN, suggesting that the AWS role is misconfigured. Please verify the AWS role and try again."
	wantReports(t, w, m, status.Message{ResourceType: "Application", ResourceID: app, Status: "unavailable", Error: text})
}

// Old records kept the ARN in the password field.
func TestPasswordUsedWhenUsernameEmpty(t *testing.T) {
	w := setup()
	a := w.auths[auth]
	a.Username, a.Password = " ", "  "+roleARN+"\n"
	w.auths[auth] = a
	o, err := run(t, w, msg(create))
	if err != nil || o.State != StateAvailable || o.AccountID != account {
		t.Fatalf("%+v, %v", o, err)
	}
	if len(w.callsTo("Verifier.Verify "+roleARN+" ")) != 1 {
		t.Errorf("calls %v", w.calls)
	}
	if w.claims[account].ARN != roleARN {
		t.Errorf("claim %+v", w.claims[account])
	}
}

func TestVerifierGetsTheParsedRole(t *testing.T) {
	w := setup()
	a := w.auths[auth]
	a.Username = "arn:aws-us-gov:iam::012345678901:role/path/to/Role"
	a.Extra.ExternalID = ""
	w.auths[auth] = a
	var got arn.Role
	w.verify = func(role arn.Role, externalID string) error {
		got = role
		if externalID != "" {
			return fmt.Errorf("external id %q", externalID)
		}
		return nil
	}
	o, err := run(t, w, msg(create))
	if err != nil || o.State != StateAvailable || o.AccountID != "012345678901" {
		t.Fatalf("%+v, %v", o, err)
	}
	want := arn.Role{Raw: "arn:aws-us-gov:iam::012345678901:role/path/to/Role", Partition: "aws-us-gov", AccountID: "012345678901", Path: "/path/to/", Name: "Role"}
	if got != want {
		t.Errorf("role %+v", got)
	}
	wantRegistered(t, w, map[string]registration{"012345678901": {org, src}})
}

func TestVerifierTransientIsRetriedNotReported(t *testing.T) {
	w := setup()
	registered(t, w)
	cause := failure.Transient("sts", errors.New("Throttling"))
	w.failNext("Verify", cause)
	o, err := run(t, w, msg(update))
	if !errors.Is(err, cause) || !failure.IsTransient(err) {
		t.Fatalf("err %v", err)
	}
	if o != (Outcome{}) {
		t.Errorf("outcome %+v", o)
	}
	wantNoCalls(t, w, "Reporter", "Registry", "Claims")
	// Nothing changed while the answer is unknown.
	wantRegistered(t, w, map[string]registration{account: {org, src}})
	wantClaims(t, w, map[string]string{src: account})
}

// An unclassified verifier error is treated as transient too.
func TestVerifierUnclassifiedIsTransient(t *testing.T) {
	w := setup()
	w.failNext("Verify", errors.New("bug"))
	_, err := run(t, w, msg(create))
	if err == nil || !failure.IsTransient(err) {
		t.Fatalf("err %v", err)
	}
	if len(w.reports) != 0 {
		t.Errorf("reported %+v", w.reports)
	}
}

func claimedBy(w *world, ownerSrc, ownerOrg, ownerARN string) {
	w.claims[account] = Claim{AccountID: account, ARN: ownerARN, SourceID: ownerSrc, OrgID: ownerOrg, AccountNumber: "acct-9"}
	w.bySource[ownerSrc] = account
}

func TestClaimConflict(t *testing.T) {
	cases := []struct {
		name     string
		ownerARN string
		code     status.Code
	}{
		{"same ARN", roleARN, status.CG1001},
		{"same account, other role", "arn:aws:iam::123456789012:role/another-role", status.CG1002},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := setup()
			claimedBy(w, otherSrc, otherOrg, tc.ownerARN)
			w.sourceApps[otherSrc] = []sources.Application{{ID: "31", SourceID: otherSrc, ApplicationTypeID: "5"}}
			w.registrations[account] = registration{otherOrg, otherSrc}
			m := msg(create)
			o, err := run(t, w, m)
			if err != nil {
				t.Fatal(err)
			}
			if o.State != StateUnavailable || o.Code != tc.code || o.ApplicationID != app {
				t.Errorf("outcome %+v", o)
			}
			wantReports(t, w, m, status.UnavailableMessage(app, tc.code))
			wantCalls(t, w,
				"Sources.CloudMeterTypeID",
				"Sources.SourceApplications 11 org=1234567 account=",
				"Sources.Links application_id=21",
				"Sources.AuthenticationWithSecret 41",
				"Verifier.Verify "+roleARN+" "+account+" ext="+ext,
				"Claims.Account source=11",
				"Claims.Claim source=11 account="+account,
				// The owner is looked up with its own tenant.
				"Sources.SourceApplications 12 org=7654321 account=acct-9",
				"Registry.Remove org=1234567 source=11",
				"Claims.Release source=11",
				"Reporter.Report 21 unavailable",
			)
			// The owner keeps its claim and its registration.
			wantClaims(t, w, map[string]string{otherSrc: account})
			wantRegistered(t, w, map[string]registration{account: {otherOrg, otherSrc}})
		})
	}
}

func TestClaimOfAGoneOwnerIsReleased(t *testing.T) {
	w := setup()
	claimedBy(w, otherSrc, otherOrg, roleARN) // source 12 was deleted while Cloudoreg was not looking
	o, err := run(t, w, msg(create))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantCalls(t, w,
		"Sources.CloudMeterTypeID",
		"Sources.SourceApplications 11 org=1234567 account=",
		"Sources.Links application_id=21",
		"Sources.AuthenticationWithSecret 41",
		"Verifier.Verify "+roleARN+" "+account+" ext="+ext,
		"Claims.Account source=11",
		"Claims.Claim source=11 account="+account,
		"Sources.SourceApplications 12 org=7654321 account=acct-9",
		"Registry.Remove org=7654321 source=12",
		"Claims.Release source=12",
		"Claims.Claim source=11 account="+account,
		"Registry.Register org=1234567 account="+account+" source=11",
		"Reporter.Report 21 available",
	)
	wantClaims(t, w, map[string]string{src: account})
	wantRegistered(t, w, map[string]registration{account: {org, src}})
}

// The gone owner was registered at RHSM (claims are taken to register): its
// registration goes too, as its destroy event would have done, or RHSM
// would keep answering 409 and the account stay blocked for ever.
func TestGoneOwnersRegistrationIsRemoved(t *testing.T) {
	w := setup()
	claimedBy(w, otherSrc, otherOrg, roleARN)
	w.registrations[account] = registration{otherOrg, otherSrc}
	o, err := run(t, w, msg(create))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
		t.Fatalf("%+v, %v", o, err)
	}
	rm, rel := w.index("Registry.Remove org=7654321 source=12"), w.index("Claims.Release source=12")
	if rm < 0 || rel < rm {
		t.Errorf("calls %v", w.calls)
	}
	wantClaims(t, w, map[string]string{src: account})
	wantRegistered(t, w, map[string]registration{account: {org, src}})

	// RHSM failing keeps the owner's claim for the retry.
	w = setup()
	claimedBy(w, otherSrc, otherOrg, roleARN)
	w.registrations[account] = registration{otherOrg, otherSrc}
	w.failNext("Remove", transient("rhsm"))
	o, err = run(t, w, msg(create))
	if !failure.IsTransient(err) || o != (Outcome{}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantNoCalls(t, w, "Claims.Release", "Reporter")
	wantClaims(t, w, map[string]string{otherSrc: account})
}

func TestClaimOwnerLookupFailures(t *testing.T) {
	t.Run("transient", func(t *testing.T) {
		w := setup()
		claimedBy(w, otherSrc, otherOrg, roleARN)
		w.failNext("SourceApplications", nil, failure.Transient("sources", errors.New("503")))
		o, err := run(t, w, msg(create))
		if err == nil || !failure.IsTransient(err) || o != (Outcome{}) {
			t.Fatalf("%+v, %v", o, err)
		}
		wantNoCalls(t, w, "Reporter", "Registry", "Claims.Release")
		wantClaims(t, w, map[string]string{otherSrc: account})
	})
	t.Run("owner claims again before the retry", func(t *testing.T) {
		w := setup()
		claimedBy(w, otherSrc, otherOrg, roleARN)
		again := &ClaimedError{Owner: Claim{AccountID: account, ARN: roleARN, SourceID: "13", OrgID: otherOrg}}
		w.failNext("Claim", nil, again)
		o, err := run(t, w, msg(create))
		// Not decided yet: retried, not reported.
		if !errors.Is(err, again) || !failure.IsTransient(err) || o != (Outcome{}) {
			t.Fatalf("%+v, %v", o, err)
		}
		wantNoCalls(t, w, "Reporter", "Registry.Register ", "Registry.Remove org=1234567")
	})
	t.Run("claim store down", func(t *testing.T) {
		w := setup()
		w.failNext("Claim", transient("claims"))
		_, err := run(t, w, msg(create))
		if !failure.IsTransient(err) {
			t.Fatalf("%v", err)
		}
		wantNoCalls(t, w, "Reporter", "Registry")
	})
}

// The customer pointed the source at another AWS account: the old
// registration goes before the new one is made.
func TestPreviousAccountRemovedBeforeRegister(t *testing.T) {
	w := setup()
	registered(t, w)
	const newARN, newAccount = "arn:aws:iam::210987654321:role/new-role", "210987654321"
	a := w.auths[auth]
	a.Username = newARN
	w.auths[auth] = a
	o, err := run(t, w, msg(update))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: newAccount}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantCalls(t, w,
		"Sources.CloudMeterTypeID",
		"Sources.SourceApplications 11 org=1234567 account=",
		"Sources.Links application_id=21",
		"Sources.AuthenticationWithSecret 41",
		"Verifier.Verify "+newARN+" "+newAccount+" ext="+ext,
		"Claims.Account source=11",
		"Registry.Remove org=1234567 source=11",
		"Claims.Claim source=11 account="+newAccount,
		"Registry.Register org=1234567 account="+newAccount+" source=11",
		"Reporter.Report 21 available",
	)
	wantRegistered(t, w, map[string]registration{newAccount: {org, src}})
	wantClaims(t, w, map[string]string{src: newAccount})
	// The old account is free for another source.
	if _, ok := w.claims[account]; ok {
		t.Error("old account still claimed")
	}
}

// RHSM fails while the source moves to another AWS account.
func TestPreviousAccountRemoveFails(t *testing.T) {
	const newAccount = "210987654321"
	w := setup()
	registered(t, w)
	a := w.auths[auth]
	a.Username = "arn:aws:iam::" + newAccount + ":role/new-role"
	w.auths[auth] = a
	w.failNext("Remove", transient("rhsm"))
	o, err := run(t, w, msg(update))
	if !failure.IsTransient(err) || o != (Outcome{}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantNoCalls(t, w, "Registry.Register ", "Reporter")
	// The claim has not moved: the retry sees the change again and removes
	// the old registration before claiming the new account.
	wantClaims(t, w, map[string]string{src: account})
	w.calls = nil
	o, err = run(t, w, msg(update))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: newAccount}) {
		t.Fatalf("retry: %+v, %v", o, err)
	}
	if rm, reg := w.index("Registry.Remove org=1234567 source=11"), w.index("Registry.Register org=1234567 account="+newAccount+" source=11"); rm < 0 || reg < rm {
		t.Errorf("retry calls %v", w.calls)
	}
	// Only the new account stays registered (the old one is no longer proven).
	wantRegistered(t, w, map[string]registration{newAccount: {org, src}})
	wantClaims(t, w, map[string]string{src: newAccount})
}

func TestRHSMConflict(t *testing.T) {
	t.Run("ours", func(t *testing.T) {
		w := setup()
		w.registrations[account] = registration{org, src} // claims were lost, RHSM remembers
		o, err := run(t, w, msg(create))
		if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
			t.Fatalf("%+v, %v", o, err)
		}
		reg, chk := w.index("Registry.Register org=1234567 account="+account+" source=11"),
			w.index("Registry.Registered org=1234567 account="+account+" source=11")
		if reg < 0 || chk < reg {
			t.Errorf("calls %v", w.calls)
		}
		wantReports(t, w, msg(create), status.AvailableMessage(app))
		wantClaims(t, w, map[string]string{src: account})
	})
	for name, holder := range map[string]registration{
		"another org":                 {otherOrg, "99"},
		"another source of this org":  {org, otherSrc},
		"another org, same source id": {otherOrg, src},
	} {
		t.Run(name, func(t *testing.T) {
			w := setup()
			w.registrations[account] = holder
			m := msg(create)
			o, err := run(t, w, m)
			if err != nil {
				t.Fatal(err)
			}
			if o.State != StateUnavailable || o.Code != status.CG1002 || o.ApplicationID != app {
				t.Errorf("outcome %+v", o)
			}
			wantReports(t, w, m, status.UnavailableMessage(app, status.CG1002))
			if w.index("Claims.Release source=11") < w.index("Registry.Registered org=1234567 account="+account+" source=11") {
				t.Errorf("calls %v", w.calls)
			}
			// The claim is given back; the holder's registration is untouched.
			wantClaims(t, w, nil)
			wantRegistered(t, w, map[string]registration{account: holder})
		})
	}
	t.Run("Registered fails", func(t *testing.T) {
		w := setup()
		w.registrations[account] = registration{otherOrg, "99"}
		w.failNext("Registered", transient("rhsm"))
		o, err := run(t, w, msg(create))
		if !failure.IsTransient(err) || o != (Outcome{}) {
			t.Fatalf("%+v, %v", o, err)
		}
		wantNoCalls(t, w, "Reporter")
	})
}

func TestRegisterTransient(t *testing.T) {
	w := setup()
	w.failNext("Register", transient("rhsm"))
	o, err := run(t, w, msg(create))
	if !failure.IsTransient(err) || failure.TargetOf(err) != "rhsm" || o != (Outcome{}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantNoCalls(t, w, "Reporter", "Registry.Remove")
	// The retry converges.
	o, err = run(t, w, msg(create))
	if err != nil || o.State != StateAvailable {
		t.Fatalf("retry: %+v, %v", o, err)
	}
	wantRegistered(t, w, map[string]registration{account: {org, src}})
}

func TestMissingOrgIsCR4001(t *testing.T) {
	w := setup()
	m := msg(create)
	m.Tenant = event.Tenant{AccountNumber: "000111"}
	o, err := run(t, w, m)
	if err != nil {
		t.Fatal(err)
	}
	if o.State != StateUnavailable || o.Code != status.CR4001 || o.ApplicationID != app {
		t.Errorf("outcome %+v", o)
	}
	wantReports(t, w, m, status.UnavailableMessage(app, status.CR4001))
	// RHSM cannot be called without an org; nothing was claimed.
	wantNoCalls(t, w, "Registry", "Claims.Claim")
	if w.index("Claims.Release source=11") < 0 {
		t.Errorf("calls %v", w.calls)
	}
	wantClaims(t, w, nil)
}

func TestReporterFailureIsTransient(t *testing.T) {
	for name, change := range map[string]func(w *world){
		"available":   func(w *world) {},
		"unavailable": func(w *world) { w.failNext("Verify", failure.Permanent(status.CG3002, "sts", errors.New("denied"))) },
	} {
		for _, cause := range []error{errors.New("kafka: client has run out of available brokers"), transient("kafka")} {
			t.Run(name+"/"+cause.Error(), func(t *testing.T) {
				w := setup()
				change(w)
				w.failNext("Report", cause)
				o, err := run(t, w, msg(create))
				if !errors.Is(err, cause) || !failure.IsTransient(err) {
					t.Fatalf("err %v", err)
				}
				if o != (Outcome{}) {
					t.Errorf("outcome %+v", o)
				}
				if len(w.callsTo("Reporter.Report")) != 1 {
					t.Errorf("calls %v", w.calls)
				}
				// A retry reports.
				if o, err := run(t, w, msg(create)); err != nil || len(w.reports) != 1 || o.State == "" {
					t.Errorf("retry: %+v, %v, %+v", o, err, w.reports)
				}
			})
		}
	}
}

// No failure of Sources is the customer's: nothing is reported or removed
// because of one. A refused PSK is retried until an operator fixes it (and
// dead-lettered under its own reason when the budget is spent); a refused
// request or an unusable answer is dead-lettered at once.
func TestSourcesFailures(t *testing.T) {
	transientErr := failure.Transient("sources", errors.New("503 Service Unavailable"))
	unauthorized := failure.Operator(failure.ReasonSourcesUnauthorized, "sources", errors.New("GET /internal/v2.0/authentications/41: HTTP 401"))
	forbidden := failure.Operator(failure.ReasonSourcesUnauthorized, "sources", errors.New("GET /api/sources/v3.1/sources/11/applications: HTTP 403"))
	refused := failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /internal/v2.0/authentications/41: HTTP 400: bad request"))
	undecodable := failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /api/sources/v3.1/application_authentications: undecodable response"))
	noType := failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("GET /api/sources/v3.1/application_types: no application type named /insights/platform/cloud-meter"))
	type class struct {
		transient bool
		reason    failure.DeadLetterReason
	}
	var (
		retried  = class{true, ""}
		operator = class{true, failure.ReasonSourcesUnauthorized}
		deadLtr  = class{false, failure.ReasonSourcesRefused}
	)
	errs := []struct {
		name string
		err  error
		want class
	}{
		{"transient", transientErr, retried},
		{"401", unauthorized, operator},
		{"403", forbidden, operator},
		{"400", refused, deadLtr},
		{"undecodable", undecodable, deadLtr},
		{"no cloud-meter type", noType, deadLtr},
	}
	calls := []struct {
		name, method, kind string
		before             []error // calls of the method that succeed first
	}{
		{"type id", "CloudMeterTypeID", create, nil},
		{"applications", "SourceApplications", create, nil},
		{"links", "Links", work.KindCheck, nil},
		{"authentication", "AuthenticationWithSecret", create, nil},
		{"claim owner's applications", "SourceApplications", create, []error{nil}},
	}
	for _, c := range calls {
		for _, e := range errs {
			t.Run(c.name+"/"+e.name, func(t *testing.T) {
				w := setup()
				registered(t, w)
				if len(c.before) > 0 {
					// Another (gone?) source holds the account: its source is read.
					w.claims[account] = Claim{AccountID: account, ARN: roleARN, SourceID: otherSrc, OrgID: otherOrg}
					w.bySource = map[string]string{otherSrc: account}
					w.registrations = map[string]registration{account: {otherOrg, otherSrc}}
				}
				w.failNext(c.method, append(c.before, e.err)...)
				o, err := run(t, w, msg(c.kind))
				if err == nil || o != (Outcome{}) {
					t.Fatalf("%+v, %v", o, err)
				}
				if !errors.Is(err, e.err) {
					t.Errorf("cause lost: %v", err)
				}
				if got := (class{failure.IsTransient(err), failure.ReasonOf(err)}); got != e.want {
					t.Errorf("class %+v, want %+v: %v", got, e.want, err)
				}
				if failure.ForCustomer(err) || failure.TargetOf(err) != "sources" {
					t.Errorf("for the customer %v, target %s", failure.ForCustomer(err), failure.TargetOf(err))
				}
				wantNoCalls(t, w, "Reporter", "Registry", "Claims.Release")
				if len(c.before) == 0 {
					wantNoCalls(t, w, "Verifier", "Claims")
					wantRegistered(t, w, map[string]registration{account: {org, src}})
				}
			})
		}
	}
}

func TestRemovalFailures(t *testing.T) {
	cases := []struct {
		name   string
		kind   string
		method string
	}{
		{"RHSM remove", srcDel, "Remove"},
		{"claim release", srcDel, "Release"},
		{"held", work.KindCheck, "Account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := setup()
			registered(t, w)
			delete(w.sourceApps, src)
			cause := transient(tc.method)
			w.failNext(tc.method, cause)
			o, err := run(t, w, msg(tc.kind))
			if !errors.Is(err, cause) || o.State == StateRemoved || o.State == StateNotOurs {
				t.Fatalf("%+v, %v", o, err)
			}
			// The retry finishes the job.
			o, err = run(t, w, msg(tc.kind))
			if err != nil || o.State != StateRemoved {
				t.Fatalf("retry: %+v, %v", o, err)
			}
			wantRegistered(t, w, nil)
			wantClaims(t, w, nil)
		})
	}
	t.Run("unavailable cannot remove", func(t *testing.T) {
		w := setup()
		registered(t, w)
		w.failNext("Verify", failure.Permanent(status.CG3002, "sts", errors.New("denied")))
		w.failNext("Remove", transient("rhsm"))
		o, err := run(t, w, msg(update))
		if !failure.IsTransient(err) || o != (Outcome{}) {
			t.Fatalf("%+v, %v", o, err)
		}
		// Not reported until the registration is gone.
		wantNoCalls(t, w, "Reporter")
	})
}

// A source through its life, each event reconciled against the state it
// finds.
func TestLifeCycle(t *testing.T) {
	w := setup()
	step := func(kind string, want State, code status.Code) {
		t.Helper()
		w.reports = nil
		o, err := run(t, w, msg(kind))
		if err != nil || o.State != want || o.Code != code {
			t.Fatalf("%s: %+v, %v; want %s %s", kind, o, err, want, code)
		}
	}
	step(create, StateAvailable, "")
	step(create, StateAvailable, "") // re-emitted
	paused := "2026-11-22 03:37:38 UTC"
	w.sourceApps[src][1].PausedAt = &paused
	step(pause, StatePaused, "")
	wantRegistered(t, w, map[string]registration{account: {org, src}})
	w.sourceApps[src][1].PausedAt = nil
	step(unpause, StateAvailable, "")

	a := w.auths[auth]
	a.Username = "arn:aws:iam::123:role/typo"
	w.auths[auth] = a
	step(update, StateUnavailable, status.CG1004)
	wantRegistered(t, w, nil)
	if w.reports[0].msg.Error != status.CG1004.Text() {
		t.Errorf("report %+v", w.reports[0].msg)
	}

	a.Username = roleARN
	w.auths[auth] = a
	step(update, StateAvailable, "")
	if w.reports[0].msg != status.AvailableMessage(app) {
		t.Errorf("report %+v", w.reports[0].msg)
	}

	w.unlink(app)
	step(linkDel, StateRemoved, "")
	if w.reports[0].msg != status.RemovedMessage(app) {
		t.Errorf("report %+v", w.reports[0].msg)
	}
	w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
	step(appDel, StateRemoved, "")
	delete(w.sourceApps, src)
	step(srcDel, StateRemoved, "")
	step(work.KindCheck, StateNotOurs, "")
	wantRegistered(t, w, nil)
	wantClaims(t, w, nil)
}

func TestClaimedErrorText(t *testing.T) {
	e := &ClaimedError{Owner: Claim{AccountID: account, SourceID: otherSrc, ARN: roleARN}}
	if got := e.Error(); got != "AWS account 123456789012 is claimed by source 12" {
		t.Errorf("%q", got)
	}
}

// attachment is a state Sources may be in when a work message comes.
type attachment struct {
	name   string
	change func(w *world)
}

var attachments = []attachment{
	{"attached", func(w *world) {}},
	// DELETE /application_authentications/{id}: the authentication is
	// still listed under the application.
	{"link deleted", func(w *world) { w.unlink(app) }},
	// DELETE /authentications/{id}: the links go with it.
	{"authentication deleted", func(w *world) { w.deleteAuthentication(auth) }},
	{"links 404", func(w *world) { w.failNext("Links", notFound("/application_authentications")) }},
	{"cloud-meter application deleted", func(w *world) {
		w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
		w.unlink(app)
	}},
	{"source deleted", func(w *world) { delete(w.sourceApps, src); w.unlink(app) }},
}

// allKinds is every kind of work a processor is given.
var allKinds = []string{create, linkDel, update, authDel, pause, unpause, appDel, srcDel, work.KindCheck}

// Every kind of work against every state of attachment, for a source that
// was registered and one that never was: a work message is a trigger, so
// the state decides. What is attached is verified and reported; a
// credential gone while the application remains is removed and reported
// unavailable with no error text, every time; what is gone with its
// application is removed and nothing is reported.
func TestEveryKindAgainstEveryAttachment(t *testing.T) {
	for _, wasRegistered := range []bool{true, false} {
		for _, a := range attachments {
			for _, kind := range allKinds {
				t.Run(fmt.Sprintf("registered=%v/%s/%s", wasRegistered, a.name, kind), func(t *testing.T) {
					w := setup()
					if wasRegistered {
						registered(t, w)
					}
					a.change(w)
					m := msg(kind)
					o, err := run(t, w, m)
					if err != nil {
						t.Fatal(err)
					}
					switch a.name {
					case "attached":
						if o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
							t.Fatalf("outcome %+v", o)
						}
						wantReports(t, w, m, status.AvailableMessage(app))
						wantRegistered(t, w, map[string]registration{account: {org, src}})
						wantClaims(t, w, map[string]string{src: account})
						return
					case "link deleted", "authentication deleted", "links 404":
						if o != (Outcome{State: StateRemoved, ApplicationID: app}) {
							t.Fatalf("outcome %+v", o)
						}
						wantReports(t, w, m, status.RemovedMessage(app))
						if rm, rep := w.index("Registry.Remove org=1234567 source=11"), w.index("Reporter.Report 21 unavailable"); rm < 0 || rep < rm {
							t.Errorf("the registration must go before the customer is told: %v", w.calls)
						}
					default: // gone with the application: nothing to report on
						want := Outcome{State: StateRemoved}
						if !wasRegistered && !event.Type(kind).IsDestroy() {
							want = Outcome{State: StateNotOurs}
							wantNoCalls(t, w, "Registry")
						}
						if o != want {
							t.Fatalf("outcome %+v, want %+v", o, want)
						}
						wantReports(t, w, m)
					}
					wantNoCalls(t, w, "Verifier", "Registry.Register ", "Sources.AuthenticationWithSecret")
					wantRegistered(t, w, nil)
					wantClaims(t, w, nil)
				})
			}
		}
	}
}

// Sources relies on a status message for every event (it writes
// last_checked_at): repeated events about a gone credential each report it.
func TestRepeatedEventsEachReport(t *testing.T) {
	w := setup()
	registered(t, w)
	w.unlink(app)
	for i, kind := range []string{linkDel, linkDel, work.KindCheck, update, work.KindCheck} {
		o, err := run(t, w, msg(kind))
		if err != nil || o != (Outcome{State: StateRemoved, ApplicationID: app}) {
			t.Fatalf("%d %s: %+v, %v", i, kind, o, err)
		}
		if len(w.reports) != i+1 || w.reports[i].msg != status.RemovedMessage(app) {
			t.Fatalf("%d %s: reports %+v", i, kind, w.reports)
		}
	}
	wantRegistered(t, w, nil)
}

// The credential going wins over a pause: a paused source must not keep a
// registration its customer deleted the credential of.
func TestGoneCredentialOfAPausedApplication(t *testing.T) {
	for _, a := range attachments[1:3] {
		for _, kind := range []string{pause, authDel, linkDel, work.KindCheck} {
			t.Run(a.name+"/"+kind, func(t *testing.T) {
				w := setup()
				registered(t, w)
				paused := "2026-11-22 03:37:38 UTC"
				w.sourceApps[src][1].PausedAt = &paused
				a.change(w)
				o, err := run(t, w, msg(kind))
				if err != nil || o != (Outcome{State: StateRemoved, ApplicationID: app}) {
					t.Fatalf("%+v, %v", o, err)
				}
				wantReports(t, w, msg(kind), status.RemovedMessage(app))
				wantRegistered(t, w, nil)
				wantClaims(t, w, nil)
			})
		}
	}
}

// Authentication.destroy of a credential that is not the cloud-meter
// application's changes nothing and asks nothing of STS or RHSM, whatever
// the cloud-meter credential's state.
func TestAnotherApplicationsCredentialDestroyed(t *testing.T) {
	for _, a := range attachments[:3] {
		for name, appID := range map[string]string{"another application's": otherApp, "the source's": ""} {
			t.Run(a.name+"/"+name, func(t *testing.T) {
				w := setup()
				registered(t, w)
				a.change(w)
				m := msg(authDel)
				m.ApplicationID, m.AuthenticationID = appID, "99"
				o, err := run(t, w, m)
				if err != nil || o != (Outcome{State: StateNotOurs}) {
					t.Fatalf("%+v, %v", o, err)
				}
				wantCalls(t, w, "Sources.CloudMeterTypeID", "Sources.SourceApplications 11 org=1234567 account=")
				wantReports(t, w, m)
				wantRegistered(t, w, map[string]registration{account: {org, src}})
				wantClaims(t, w, map[string]string{src: account})
			})
		}
	}
}

// The cloud-meter credential was replaced: the destroy of the old one
// leaves the source registered with the one now attached.
func TestDestroyedCredentialReplaced(t *testing.T) {
	w := setup()
	registered(t, w)
	const newARN, newAccount = "arn:aws:iam::210987654321:role/new-role", "210987654321"
	w.deleteAuthentication(auth)
	replacement := cloudMeterAuth("43", newARN)
	w.appAuths[app] = []sources.Authentication{replacement}
	w.auths["43"] = replacement
	w.link(app, "43")
	o, err := run(t, w, msg(authDel))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: newAccount}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantRegistered(t, w, map[string]registration{newAccount: {org, src}})
	wantClaims(t, w, map[string]string{src: newAccount})
}

// A failure while removing is retried before anything is reported; the
// retry removes and reports.
func TestGoneCredentialRemovalFails(t *testing.T) {
	for _, method := range []string{"Remove", "Release", "Report"} {
		t.Run(method, func(t *testing.T) {
			w := setup()
			registered(t, w)
			w.deleteAuthentication(auth)
			w.failNext(method, transient(method))
			o, err := run(t, w, msg(authDel))
			if !failure.IsTransient(err) || o != (Outcome{}) {
				t.Fatalf("%+v, %v", o, err)
			}
			if len(w.reports) != 0 {
				t.Fatalf("reported before the registration was gone: %+v", w.reports)
			}
			o, err = run(t, w, msg(authDel))
			if err != nil || o != (Outcome{State: StateRemoved, ApplicationID: app}) {
				t.Fatalf("retry: %+v, %v", o, err)
			}
			wantReports(t, w, msg(authDel), status.RemovedMessage(app))
			wantRegistered(t, w, nil)
			wantClaims(t, w, nil)
		})
	}
}

// TestWrongTenantChangesNoClaim: work for a registered source under a
// tenant that does not own its claim (a forged or misrouted tenant header;
// Sources answers it 404) changes nothing, whatever its kind: no release,
// no RHSM call, no status.
func TestWrongTenantChangesNoClaim(t *testing.T) {
	for _, kind := range []string{srcDel, appDel, linkDel, create, string(event.AuthUpdate), string(event.AppUnpause), work.KindCheck} {
		for _, wrong := range []event.Tenant{{OrgID: otherOrg}, {AccountNumber: "654321"}} {
			t.Run(kind+"/"+wrong.Key(), func(t *testing.T) {
				w := setup()
				registered(t, w)
				delete(w.sourceApps, src) // what Sources answers another tenant
				w.calls, w.reports = nil, nil
				m := msg(kind)
				m.Tenant = wrong
				o, err := run(t, w, m)
				if err != nil || o.State != StateOtherOrg {
					t.Fatalf("%+v, %v; want %s", o, err, StateOtherOrg)
				}
				wantNoCalls(t, w, "Registry", "Claims.Release", "Claims.Claim", "Reporter")
				wantRegistered(t, w, map[string]registration{account: {org, src}})
				wantClaims(t, w, map[string]string{src: account})
			})
		}
	}
}
