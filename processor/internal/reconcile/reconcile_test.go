package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/processor/internal/awsverify"
	"github.com/cloudoreg/cloudoreg/processor/internal/failure"
	"github.com/cloudoreg/cloudoreg/shared/event"
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
	arn      = "arn:aws:iam::123456789012:role/cloud-meter-role"
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
	a := cloudMeterAuth(auth, arn)
	w.appAuths[app] = []sources.Authentication{a}
	w.auths[auth] = a
	return w
}

// msg is the work message the listener makes of an event of kind.
func msg(kind string) work.Message {
	m := work.Message{Kind: kind, SourceID: src, Tenant: tenant, Identity: "eyJpZGVudGl0eSI6e319", Origin: "platform.sources.event-stream/0/7"}
	switch event.Type(kind) {
	case event.AppAuthCreate, event.AppAuthDestroy, event.AuthUpdate:
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
			calls := []string{
				"Sources.CloudMeterTypeID",
				"Sources.SourceApplications 11 org=1234567 account=",
			}
			if kind != create {
				// Only a create names the authentication to verify.
				calls = append(calls, "Sources.ApplicationAuthentications 21")
			}
			calls = append(calls,
				"Sources.AuthenticationWithSecret 41",
				"Verifier.Verify "+arn+" "+account+" ext="+ext,
				"Claims.Account source=11",
				"Claims.Claim source=11 account="+account,
				"Registry.Register org=1234567 account="+account+" source=11",
				"Reporter.Report 21 available",
			)
			wantCalls(t, w, calls...)
			wantRegistered(t, w, map[string]registration{account: {org, src}})
			wantClaims(t, w, map[string]string{src: account})
			if c := w.claims[account]; c != (Claim{AccountID: account, ARN: arn, SourceID: src, OrgID: org}) {
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
// cloud-meter authentication: the application's current one is verified.
func TestCreateOfAnotherApplication(t *testing.T) {
	w := setup()
	m := msg(create)
	m.ApplicationID, m.AuthenticationID = otherApp, "99"
	o, err := run(t, w, m)
	if err != nil || o.State != StateAvailable {
		t.Fatalf("%+v, %v", o, err)
	}
	if len(w.callsTo("Sources.ApplicationAuthentications 21")) != 1 || len(w.callsTo("Sources.AuthenticationWithSecret 41")) != 1 {
		t.Errorf("calls %v", w.calls)
	}
}

func TestPicksTheCloudMeterAuthentication(t *testing.T) {
	w := setup()
	other := sources.Authentication{ID: "40", AuthType: "access_key_secret_key", ResourceType: "Application"}
	w.appAuths[app] = []sources.Authentication{other, w.auths[auth]}
	w.auths["40"] = other
	o, err := run(t, w, msg(work.KindCheck))
	if err != nil || o.State != StateAvailable {
		t.Fatalf("%+v, %v", o, err)
	}
	wantNoCalls(t, w, "Sources.AuthenticationWithSecret 40")
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
		for _, kind := range []string{create, update, pause, unpause, work.KindCheck} {
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
			wantCalls(t, w, "Sources.CloudMeterTypeID", "Sources.SourceApplications 11 org=1234567 account=")
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

func TestNoAuthenticationLinkIsRemoved(t *testing.T) {
	for name, change := range map[string]func(w *world){
		"no links":     func(w *world) { w.appAuths[app] = nil },
		"links 404":    func(w *world) { w.failNext("ApplicationAuthentications", notFound("/applications/21/authentications")) },
		"empty list":   func(w *world) { w.appAuths[app] = []sources.Authentication{} },
		"create of an": func(w *world) { w.appAuths[app] = nil },
	} {
		t.Run(name, func(t *testing.T) {
			w := setup()
			registered(t, w)
			change(w)
			m := msg(linkDel)
			if name == "create of an" {
				// A create for another application: the cloud-meter one has no link.
				m = msg(create)
				m.ApplicationID = otherApp
			}
			o, err := run(t, w, m)
			if err != nil || o != (Outcome{State: StateRemoved, ApplicationID: app}) {
				t.Fatalf("%+v, %v", o, err)
			}
			wantCalls(t, w,
				"Sources.CloudMeterTypeID",
				"Sources.SourceApplications 11 org=1234567 account=",
				"Sources.ApplicationAuthentications 21",
				"Registry.Remove org=1234567 source=11",
				"Claims.Release source=11",
			)
			if len(w.reports) != 0 {
				t.Errorf("reported %+v", w.reports)
			}
			wantRegistered(t, w, nil)
			wantClaims(t, w, nil)
		})
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
		{"CG2000 authentication of the create is gone", create, func(w *world) { delete(w.auths, auth) }, status.CG2000, false},
		{"CG2000 current authentication is gone", work.KindCheck, func(w *world) { delete(w.auths, auth) }, status.CG2000, false},
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
		{"CG2001 only other authentications", work.KindCheck, func(w *world) {
			other := sources.Authentication{ID: "42", AuthType: "arn", Username: arn, ResourceType: "Application"}
			w.appAuths[app] = []sources.Authentication{other}
			w.auths["42"] = other
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
			a.Username, a.Password = "arn:aws:s3:::bucket", arn
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
		"Sources.AuthenticationWithSecret 41",
		"Verifier.Verify "+arn+" "+account+" ext="+ext,
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
	a.Username, a.Password = " ", "  "+arn+"\n"
	w.auths[auth] = a
	o, err := run(t, w, msg(create))
	if err != nil || o.State != StateAvailable || o.AccountID != account {
		t.Fatalf("%+v, %v", o, err)
	}
	if len(w.callsTo("Verifier.Verify "+arn+" ")) != 1 {
		t.Errorf("calls %v", w.calls)
	}
	if w.claims[account].ARN != arn {
		t.Errorf("claim %+v", w.claims[account])
	}
}

func TestVerifierGetsTheParsedRole(t *testing.T) {
	w := setup()
	a := w.auths[auth]
	a.Username = "arn:aws-us-gov:iam::012345678901:role/path/to/Role"
	a.Extra.ExternalID = ""
	w.auths[auth] = a
	var got awsverify.RoleARN
	w.verify = func(role awsverify.RoleARN, externalID string) error {
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
	want := awsverify.RoleARN{Raw: "arn:aws-us-gov:iam::012345678901:role/path/to/Role", Partition: "aws-us-gov", AccountID: "012345678901", Path: "/path/to/", Name: "Role"}
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
		{"same ARN", arn, status.CG1001},
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
				"Sources.AuthenticationWithSecret 41",
				"Verifier.Verify "+arn+" "+account+" ext="+ext,
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
	claimedBy(w, otherSrc, otherOrg, arn) // source 12 was deleted while Cloudoreg was not looking
	o, err := run(t, w, msg(create))
	if err != nil || o != (Outcome{State: StateAvailable, ApplicationID: app, AccountID: account}) {
		t.Fatalf("%+v, %v", o, err)
	}
	wantCalls(t, w,
		"Sources.CloudMeterTypeID",
		"Sources.SourceApplications 11 org=1234567 account=",
		"Sources.AuthenticationWithSecret 41",
		"Verifier.Verify "+arn+" "+account+" ext="+ext,
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
	claimedBy(w, otherSrc, otherOrg, arn)
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
	claimedBy(w, otherSrc, otherOrg, arn)
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
		claimedBy(w, otherSrc, otherOrg, arn)
		w.failNext("SourceApplications", nil, &sources.TransientError{Err: errors.New("503")})
		o, err := run(t, w, msg(create))
		if err == nil || !failure.IsTransient(err) || o != (Outcome{}) {
			t.Fatalf("%+v, %v", o, err)
		}
		wantNoCalls(t, w, "Reporter", "Registry", "Claims.Release")
		wantClaims(t, w, map[string]string{otherSrc: account})
	})
	t.Run("owner claims again before the retry", func(t *testing.T) {
		w := setup()
		claimedBy(w, otherSrc, otherOrg, arn)
		again := &ClaimedError{Owner: Claim{AccountID: account, ARN: arn, SourceID: "13", OrgID: otherOrg}}
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
		"Sources.ApplicationAuthentications 21",
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

func TestSourcesFailures(t *testing.T) {
	transientErr := &sources.TransientError{Err: errors.New("503 Service Unavailable")}
	unauthorized := fmt.Errorf("GET /applications: %w", sources.ErrUnauthorized)
	permanentErr := errors.New("GET /sources/11/applications: 400 Bad Request")
	cases := []struct {
		name      string
		method    string
		kind      string
		errs      []error
		transient bool
	}{
		{"type id transient", "CloudMeterTypeID", create, []error{transientErr}, true},
		{"type id unauthorized", "CloudMeterTypeID", create, []error{unauthorized}, true},
		{"type id unknown", "CloudMeterTypeID", create, []error{errors.New("sources: no application type named /insights/platform/cloud-meter")}, false},
		{"applications transient", "SourceApplications", create, []error{transientErr}, true},
		{"applications permanent", "SourceApplications", create, []error{permanentErr}, false},
		{"links transient", "ApplicationAuthentications", work.KindCheck, []error{transientErr}, true},
		{"links permanent", "ApplicationAuthentications", work.KindCheck, []error{permanentErr}, false},
		{"authentication transient", "AuthenticationWithSecret", create, []error{transientErr}, true},
		{"authentication unauthorized", "AuthenticationWithSecret", create, []error{unauthorized}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := setup()
			registered(t, w)
			w.failNext(tc.method, tc.errs...)
			o, err := run(t, w, msg(tc.kind))
			if err == nil || o != (Outcome{}) {
				t.Fatalf("%+v, %v", o, err)
			}
			if !errors.Is(err, tc.errs[0]) {
				t.Errorf("cause lost: %v", err)
			}
			if failure.IsTransient(err) != tc.transient {
				t.Errorf("transient %v: %v", failure.IsTransient(err), err)
			}
			if !tc.transient && failure.CodeOf(err) != status.CG3000 {
				t.Errorf("code %s", failure.CodeOf(err))
			}
			if failure.TargetOf(err) != "sources" {
				t.Errorf("target %s", failure.TargetOf(err))
			}
			// A Sources failure is Cloudoreg's problem, not the customer's:
			// nothing reported, nothing removed.
			wantNoCalls(t, w, "Reporter", "Registry", "Claims", "Verifier")
			wantRegistered(t, w, map[string]registration{account: {org, src}})
		})
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

	a.Username = arn
	w.auths[auth] = a
	step(update, StateAvailable, "")
	if w.reports[0].msg != status.AvailableMessage(app) {
		t.Errorf("report %+v", w.reports[0].msg)
	}

	w.appAuths[app] = nil
	step(linkDel, StateRemoved, "")
	w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
	step(appDel, StateRemoved, "")
	delete(w.sourceApps, src)
	step(srcDel, StateRemoved, "")
	step(work.KindCheck, StateNotOurs, "")
	wantRegistered(t, w, nil)
	wantClaims(t, w, nil)
}

func TestClaimedErrorText(t *testing.T) {
	e := &ClaimedError{Owner: Claim{AccountID: account, SourceID: otherSrc, ARN: arn}}
	if got := e.Error(); got != "AWS account 123456789012 is claimed by source 12" {
		t.Errorf("%q", got)
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
