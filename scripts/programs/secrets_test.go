package programs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// TestSecretsNeverLeak runs a whole life cycle (create, a wrong external
// id, a fix, an availability check, a delete) with every credential the
// programs take set to a distinctive value, half of them from files, some
// inside URLs (the listener's NATS_URL, the processor's SOURCES_URL), at
// debug level, with Sources requiring the PSK, RHSM the bearer token and
// NATS the password. Sources and RHSM fail some calls on the way (the
// failure paths log errors). Then programs that cannot work start: one
// with a SASL password the broker refuses, one whose NATS login is refused
// (a wrong password inside its NATS_URL). Then no secret, no x-rh-identity
// value (nor the user inside it) and no external id appears in the output
// of the programs and the stand-ins, in /metrics, or in what the stand-ins
// record about calls (STS's call record keeps the external id it was sent
// by design: that is how tests see it was sent; it is never logged).
//
// Both programs report errors to a Glitchtip stand-in (the DSN of one from
// a file), and a work message carrying the identity is made to fail for
// good, so the processor logs an error: the events Glitchtip receives must
// hold none of these secrets either.
//
// The SASL password is covered on the failure path only: kfake with SASL
// enabled would refuse the stand-ins' Kafka clients, which have no SASL
// settings.
func TestSecretsNeverLeak(t *testing.T) {
	const org = "5550002"
	secrets := map[string]string{
		"SOURCES_PSK (file)":           "psk-SECRET-6f1c0a93",
		"SOURCES_PSK (overridden)":     "decoy-psk-SECRET-118e2f",
		"RHSM_BEARER_TOKEN":            "rhsm-token-SECRET-93b7e2c4",
		"AWS_SECRET_ACCESS_KEY (file)": "aws-secret-SECRET-4d5a18f0",
		"NATS_PASSWORD":                "nats-password-SECRET-b21c7f55",
		"KAFKA_SASL_PASSWORD":          "sasl-password-SECRET-3e9d07aa",
		"password in SOURCES_URL":      "sources-url-password-SECRET-77c1d2",
		"wrong password in NATS_URL":   "wrong-nats-password-SECRET-c4f019",
	}
	externalID, wrongExternalID := "external-id-SECRET-0c9e55d1", "wrong-external-id-SECRET-7a3d1109"
	identityUser := "identity-user-SECRET-5e8b2a"
	identity := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(
		`{"identity":{"org_id":%q,"account_number":"","type":"User","user":{"username":%q,"email":"%s@example.com"},"internal":{"org_id":%q}},"entitlements":{}}`,
		org, identityUser, identityUser, org)))
	const role, otherRole = "arn:aws:iam::600000000001:role/secret-test", "arn:aws:iam::600000000002:role/secret-test"

	logs := &testkit.SyncBuffer{}
	standinLog := logrus.New()
	standinLog.SetOutput(logs)
	standinLog.SetFormatter(&logrus.JSONFormatter{})
	standinLog.SetLevel(logrus.DebugLevel)

	// NATS that wants Cloudoreg's password.
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
		Users: []*server.User{{Username: "cloudoreg", Password: secrets["NATS_PASSWORD"]}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats did not start")
	}
	// RHSM that wants the bearer token.
	rh := rhsm.New(rhsm.Options{BearerToken: secrets["RHSM_BEARER_TOKEN"], Logger: standinLog.WithField("standin", "rhsm-with-token")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rhsmSrv := &http.Server{Handler: rh, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rhsmSrv.Serve(ln) }()
	rhsmBase := "http://" + ln.Addr().String()

	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	trust := file("trust.json", fmt.Sprintf(`{"roles":[{"arn":%q,"external_id":%q},{"arn":%q,"external_id":%q}]}`, role, externalID, otherRole, externalID))
	glitchtip := testkit.NewSentry(t)
	natsHost := strings.TrimPrefix(ns.ClientURL(), "nats://")
	s := newSystem(t, systemConfig{
		processors: 1,
		logs:       logs,
		stack:      stack.Config{PSK: secrets["SOURCES_PSK (file)"], TrustFile: trust, ExternalNATS: true},
		common: []string{
			"LOG_LEVEL=debug", "ENV_NAME=secret-test",
			"NATS_URL=" + ns.ClientURL(), "NATS_USER=cloudoreg",
		},
		listener: []string{
			"GLITCHTIP_DSN=" + glitchtip.DSN("glitchtip-public-key"),
			"SOURCES_PSK=" + secrets["SOURCES_PSK (file)"],
			"NATS_USER=", "NATS_URL=nats://cloudoreg:" + secrets["NATS_PASSWORD"] + "@" + natsHost,
		},
		processor: []string{
			"GLITCHTIP_DSN_FILE=" + file("glitchtip-dsn", glitchtip.DSN("glitchtip-public-key")),
			"SOURCES_PSK=" + secrets["SOURCES_PSK (overridden)"],
			"SOURCES_PSK_FILE=" + file("psk", secrets["SOURCES_PSK (file)"]),
			"NATS_PASSWORD_FILE=" + file("nats-password", secrets["NATS_PASSWORD"]),
			"RHSM_URL=" + rhsmBase + rhsm.DefaultPrefix,
			"RHSM_BEARER_TOKEN=" + secrets["RHSM_BEARER_TOKEN"],
			"AWS_ACCESS_KEY_ID=AKIACLOUDOREGTEST001",
			"AWS_SECRET_ACCESS_KEY_FILE=" + file("aws-secret", secrets["AWS_SECRET_ACCESS_KEY (file)"]),
		},
	})
	t.Cleanup(func() {
		_ = rhsmSrv.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	// Go's HTTP client sends a URL's user information as basic auth; the
	// stand-in ignores it.
	s.processors[0].env = append(s.processors[0].env,
		"SOURCES_URL="+strings.Replace(s.stack.SourcesURL, "://", "://cloudoreg:"+secrets["password in SOURCES_URL"]+"@", 1))
	s.startAll()
	tenant := map[string]string{event.HeaderOrgID: org, event.HeaderIdentity: identity}
	// Failure paths on the way: RHSM fails calls, which are retried and
	// logged (Sources too, below, once the sources are created).
	rh.Faults().Set(faults.Fault{Status: http.StatusServiceUnavailable, Count: 2})

	good, err := s.createSource("secret-good", role, externalID, tenant)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := s.createSource("secret-wrong", otherRole, wrongExternalID, tenant)
	if err != nil {
		t.Fatal(err)
	}
	s.stack.Sources.Faults().Set(faults.Fault{Status: http.StatusServiceUnavailable, Count: 3})
	s.awaitApps("got a status", []string{good.AppID, wrong.AppID}, hasStatus)
	expectApp(t, s, good.AppID, status.Available, "")
	expectApp(t, s, wrong.AppID, status.Unavailable, status.CG3002.Text())

	// The customer fixes the external id; Sources checks availability.
	if err := s.rest(http.MethodPatch, "/api/sources/v3.1/authentications/"+wrong.AuthID, tenant,
		map[string]any{"extra": map[string]any{"external_id": externalID}}, http.StatusOK, nil); err != nil {
		t.Fatal(err)
	}
	s.awaitApps("fixed", []string{wrong.AppID}, func(a sources.Application) bool { return a.AvailabilityStatus == status.Available })
	before := len(s.stack.Sources.StatusLog())
	if err := s.rest(http.MethodPost, "/api/sources/v3.1/sources/"+good.SourceID+"/check_availability", tenant, nil, http.StatusAccepted, nil); err != nil {
		t.Fatal(err)
	}
	s.awaitStatusLog("the availability check's status", before+1)
	// The good one is deleted: its registration goes (a DELETE with the token).
	if err := s.rest(http.MethodDelete, "/api/sources/v3.1/sources/"+good.SourceID, tenant, nil, http.StatusNoContent, nil); err != nil {
		t.Fatal(err)
	}
	awaitRegistrations(t, rh, org, 1)

	// The identity travelled: every status went out with one (the
	// stand-in's status log shows it redacted).
	for _, r := range s.stack.Sources.StatusLog() {
		if !r.HasIdentity() {
			t.Errorf("status %s went out without x-rh-identity", r.Value)
		}
	}
	for _, c := range rh.Calls() {
		if c.Status == http.StatusUnauthorized {
			t.Errorf("RHSM refused a call without the token: %+v", c)
		}
	}

	// A work message that cannot succeed, with the tenant's identity: the
	// processor dead-letters it and logs an error, which goes to Glitchtip.
	deadLetterWithIdentity(t, ns.ClientURL(), secrets["NATS_PASSWORD"], org, identity)
	events := glitchtip.AwaitEvents(t, 1, waitLimit)
	if ev := events[0]; ev["message"] != "work message dead-lettered" || ev["environment"] != "secret-test" || ev["logger"] != "cloudoreg-processor" {
		t.Errorf("Glitchtip event %v, want the processor's dead letter in environment secret-test", ev)
	}

	// Programs that cannot start their work: the broker refuses the SASL
	// login, NATS refuses the password in the URL. Each is stopped once it
	// has said so.
	s.runFailing("listener-refused-sasl", "kafka", "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM=PLAIN",
		"KAFKA_SASL_USERNAME=cloudoreg", "KAFKA_SASL_PASSWORD="+secrets["KAFKA_SASL_PASSWORD"],
		"NATS_USER=", "NATS_URL=nats://cloudoreg:"+secrets["NATS_PASSWORD"]+"@"+natsHost)
	s.runFailing("listener-refused-nats", "nats", "NATS_USER=", "NATS_URL=nats://cloudoreg:"+secrets["wrong password in NATS_URL"]+"@"+natsHost)

	// Everything an operator or a log pipeline could see.
	visible := map[string]string{
		"events sent to Glitchtip":             glitchtip.Raw(),
		"output of the programs and stand-ins": logs.String(),
		"listener /metrics":                    get(t, "http://"+s.listener.opsAddr()+"/metrics"),
		"processor /metrics":                   get(t, "http://"+s.processors[0].opsAddr()+"/metrics"),
		"Sources stand-in calls":               get(t, s.stack.SourcesURL+sources.CallsPath),
		"RHSM stand-in calls":                  get(t, rhsmBase+rhsm.CallsPath),
	}
	stsCalls := get(t, s.stack.STSURL+"/_calls")
	never := map[string]string{"x-rh-identity": identity, "identity's user": identityUser, "external id": externalID, "wrong external id": wrongExternalID}
	for k, v := range secrets {
		never[k] = v
	}
	for what, value := range never {
		for where, text := range visible {
			if leaked(text, value) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
		if !strings.Contains(what, "external id") && leaked(stsCalls, value) {
			t.Errorf("the %s appears in the STS stand-in's calls", what)
		}
	}
	if !strings.Contains(stsCalls, externalID) {
		t.Errorf("the STS stand-in's calls do not show the external id: was it sent at all?")
	}
	// The summaries say which secrets are set, and only that.
	out := logs.String()
	for _, want := range []string{
		`"SOURCES_PSK_FILE":"(set)"`, `"RHSM_BEARER_TOKEN":"(set)"`, `"AWS_SECRET_ACCESS_KEY_FILE":"(set)"`,
		`"NATS_PASSWORD_FILE":"(set)"`, `"NATS_USER":"cloudoreg"`, `"AWS_ACCESS_KEY_ID":"AKIACLOUDOREGTEST001"`,
		`"KAFKA_SASL_PASSWORD":"(set)"`, `"NATS_URL":"nats://(userinfo)@` + natsHost + `"`, `"SOURCES_URL":"http://(userinfo)@`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in the configuration summaries", want)
		}
	}
	if !hasEntry(out, map[string]string{"level": "debug", "message": "event type ignored", "app": "cloudoreg-listener"}) {
		t.Errorf("the programs logged nothing at debug level: the test saw less than it could")
	}
}

// deadLetterWithIdentity publishes a work message whose attempt count is
// not a number (so it is dead-lettered as undecodable) and that carries the
// identity.
func deadLetterWithIdentity(t *testing.T, url, password, org, identity string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo("cloudoreg", password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h := workstream.Header(work.Message{Kind: string(event.AppAuthCreate), SourceID: "990001", Tenant: event.Tenant{OrgID: org}, Identity: identity})
	h.Set(workstream.HeaderAttempt, "not-a-number")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: work.Subject("990001"), Header: h}); err != nil {
		t.Fatal(err)
	}
}

// hasEntry reports whether one JSON line of out (after the program's
// prefix) has all the fields.
func hasEntry(out string, fields map[string]string) bool {
	for _, line := range strings.Split(out, "\n") {
		var e map[string]any
		if i := strings.IndexByte(line, '{'); i < 0 || json.Unmarshal([]byte(line[i:]), &e) != nil {
			continue
		}
		all := true
		for k, v := range fields {
			all = all && e[k] == v
		}
		if all {
			return true
		}
	}
	return false
}

// runFailing runs the listener with env added to the common one until its
// output names the failing dependency (the word want in a warning or
// error line), then stops it. Its output joins the system's.
func (s *system) runFailing(name, want string, env ...string) {
	s.t.Helper()
	out := &testkit.SyncBuffer{}
	cmd := exec.Command(filepath.Join(binDir, "listener"))
	cmd.Env = append(append(append(os.Environ(), s.common...), "METRICS_PORT=0", "LOG_LEVEL=debug"), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_, _ = s.logs.Write([]byte(out.String()))
	}()
	failed := regexp.MustCompile(`"level":"(warning|error|fatal)".*(?i:` + want + `)|(?i:` + want + `).*"level":"(warning|error|fatal)"`)
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !failed.MatchString(out.String()) {
		if time.Now().After(deadline) {
			s.t.Errorf("%s never reported a %s failure:\n%s", name, want, out.String())
			return
		}
		<-tick.C
	}
}

// leaked reports whether text holds value or a recognisable piece of it (a
// secret cut short, or shown with its start masked).
func leaked(text, value string) bool {
	if strings.Contains(text, value) {
		return true
	}
	return len(value) > 16 && strings.Contains(text, value[len(value)-12:])
}

func expectApp(t *testing.T, s *system, appID, want, wantErr string) {
	t.Helper()
	snap := s.awaitApps("got a status", []string{appID}, hasStatus)
	if a := snap.Applications[appID]; a.AvailabilityStatus != want || a.AvailabilityStatusError != wantErr {
		t.Errorf("application %s: %q %q, want %q %q", appID, a.AvailabilityStatus, a.AvailabilityStatusError, want, wantErr)
	}
}

// awaitStatusLog waits until Sources has read n status messages.
func (s *system) awaitStatusLog(what string, n int) {
	s.t.Helper()
	s.awaitSnapshot(what, func(snap sources.Snapshot) bool { return len(snap.StatusLog) >= n })
}

// awaitRegistrations waits until RHSM's registrations of org number n,
// asking the stand-in on a ticker within a deadline.
func awaitRegistrations(t *testing.T, rh *rhsm.Server, org string, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(rh.Registrations()[org]) != n {
		if time.Now().After(deadline) {
			t.Fatalf("RHSM holds %v for org %s, want %d registration(s)", rh.Registrations()[org], org, n)
		}
		<-tick.C
	}
}
