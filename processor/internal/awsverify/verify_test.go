package awsverify

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cloudoreg/cloudoreg/processor/internal/arn"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Roles of scripts/sts-trust.json.
const (
	trustedARN = "arn:aws:iam::123456789012:role/cloud-meter-trusted"
	deniedARN  = "arn:aws:iam::210987654321:role/cloud-meter-denied"
	noGCIARN   = "arn:aws:iam::345678901234:role/cloud-meter-no-policy"
	openARN    = "arn:aws:iam::456789012345:role/cloud-meter-open"
	zeroARN    = "arn:aws:iam::012345678901:role/cloud-meter-leading-zero"
	extID      = "cloudoreg-demo-external-id"
)

// Cloudoreg's own (fake) credentials in the tests.
const (
	ownKeyID  = "AKIACLOUDOREGTEST001"
	ownSecret = "cloudoreg+test/secret+key+0123456789ABCDEFG"
	ownToken  = "cloudoreg-test-session-token"
)

func newVerifier(t *testing.T, endpoint string, timeout time.Duration) *Verifier {
	t.Helper()
	v, err := New(context.Background(), Config{
		Endpoint:        endpoint,
		Region:          "us-east-1",
		AccessKeyID:     ownKeyID,
		SecretAccessKey: ownSecret,
		SessionToken:    ownToken,
		Timeout:         timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustParse(t *testing.T, raw string) arn.Role {
	t.Helper()
	r, err := arn.ParseRole(raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantPermanent asserts err is a permanent failure of STS with code.
func wantPermanent(t *testing.T, err error, code status.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("verified, want permanent %s", code)
	}
	if failure.IsTransient(err) || failure.CodeOf(err) != code || failure.TargetOf(err) != Target {
		t.Fatalf("got %v, want permanent %s", err, code)
	}
}

func wantTransient(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("verified, want a transient failure")
	}
	if !failure.IsTransient(err) || failure.TargetOf(err) != Target {
		t.Fatalf("got %v, want a transient STS failure", err)
	}
}

// noSecrets asserts the error text holds none of the secrets.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range append(secrets, extID, ownKeyID, ownSecret, ownToken) {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains the secret %q", err, s)
		}
	}
}

func TestVerifySuccess(t *testing.T) {
	t.Parallel()
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 0)

	// Surrounding whitespace of a pasted external id is not sent.
	if err := v.Verify(context.Background(), mustParse(t, trustedARN), "  "+extID+"\n"); err != nil {
		t.Fatalf("verify: %v", err)
	}
	calls := sts.calls(t)
	if len(calls) != 2 {
		t.Fatalf("calls %+v", calls)
	}
	ar, gci := calls[0], calls[1]
	if ar.Action != "AssumeRole" || ar.RoleARN != trustedARN || ar.RoleSessionName != "cloudoreg-123456789012" ||
		!ar.ExternalIDSent || ar.ExternalID != extID || ar.DurationSeconds != 900 || ar.AccessKeyID != ownKeyID || ar.Status != 200 {
		t.Errorf("AssumeRole call %+v", ar)
	}
	if !ar.PolicySent {
		t.Fatal("no session policy sent")
	}
	var policy struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   any
			Resource any
		}
	}
	if err := json.Unmarshal([]byte(ar.Policy), &policy); err != nil {
		t.Fatalf("session policy %q: %v", ar.Policy, err)
	}
	if len(policy.Statement) != 1 || policy.Statement[0].Effect != "Allow" ||
		policy.Statement[0].Action != "sts:GetCallerIdentity" || policy.Statement[0].Resource != "*" {
		t.Errorf("session policy allows more than sts:GetCallerIdentity: %s", ar.Policy)
	}
	if gci.Action != "GetCallerIdentity" || !strings.HasPrefix(gci.AccessKeyID, "ASIA") || gci.Status != 200 {
		t.Errorf("GetCallerIdentity call %+v (must use the temporary credentials)", gci)
	}
}

func TestVerifyWithoutExternalID(t *testing.T) {
	t.Parallel()
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 0)
	for _, ext := range []string{"", " \t"} {
		if err := v.Verify(context.Background(), mustParse(t, openARN), ext); err != nil {
			t.Fatalf("verify with external id %q: %v", ext, err)
		}
	}
	for _, c := range sts.calls(t) {
		if c.ExternalIDSent {
			t.Errorf("a blank external id was sent: %+v", c)
		}
	}
}

func TestVerifyLeadingZeroAccount(t *testing.T) {
	t.Parallel()
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 0)
	role := mustParse(t, zeroARN)
	if role.AccountID != "012345678901" {
		t.Fatalf("account id %q", role.AccountID)
	}
	if err := v.Verify(context.Background(), role, extID); err != nil {
		t.Fatal(err)
	}
	if c := sts.calls(t)[0]; c.RoleSessionName != "cloudoreg-012345678901" {
		t.Errorf("session name %q", c.RoleSessionName)
	}
}

func TestVerifyDenied(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, arn, ext string
		sent           bool
	}{
		{"external id missing", trustedARN, "", false},
		{"external id wrong", trustedARN, "someone-elses-external-id", true},
		{"unknown role", "arn:aws:iam::999999999999:role/nobody", extID, true},
		{"assume_role deny", deniedARN, extID, true},
	}
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 0)
	for i, tc := range cases {
		err := v.Verify(context.Background(), mustParse(t, tc.arn), tc.ext)
		wantPermanent(t, err, status.CG3002)
		t.Log(err)
		noSecrets(t, err, tc.ext)
		calls := sts.calls(t)
		if len(calls) != i+1 {
			t.Fatalf("%s: %d calls, want %d (one AssumeRole per case)", tc.name, len(calls), i+1)
		}
		if c := calls[i]; c.Action != "AssumeRole" || c.ExternalIDSent != tc.sent || c.ErrorCode != "AccessDenied" {
			t.Errorf("%s: call %+v", tc.name, c)
		}
	}
}

func TestVerifyCallerIdentityDenied(t *testing.T) {
	t.Parallel()
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 0)
	err := v.Verify(context.Background(), mustParse(t, noGCIARN), "")
	wantPermanent(t, err, status.CG3003)
	noSecrets(t, err)

	// Flip a role to deny at run time.
	if err := v.Verify(context.Background(), mustParse(t, openARN), ""); err != nil {
		t.Fatal(err)
	}
	sts.trust(t, `{"roles":[{"arn":"`+openARN+`","assume_role":"allow","get_caller_identity":"deny"}]}`)
	err = v.Verify(context.Background(), mustParse(t, openARN), "")
	wantPermanent(t, err, status.CG3003)
}

func TestVerifyTransientFaults(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"throttling":           `{"status":400,"count":1}`,
		"ThrottlingException":  `{"status":400,"code":"ThrottlingException","count":1}`,
		"RequestLimitExceeded": `{"status":400,"code":"RequestLimitExceeded","count":1}`,
		"service unavailable":  `{"status":503,"count":1}`,
		"internal failure":     `{"status":500,"count":1}`,
		"5xx with odd code":    `{"status":502,"code":"AccessDenied","count":1}`,
	}
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 0)
	n := 0
	for name, fault := range cases {
		sts.fault(t, fault)
		err := v.Verify(context.Background(), mustParse(t, trustedARN), extID)
		wantTransient(t, err)
		t.Log(err)
		noSecrets(t, err)
		n++
		// The SDK must not retry: one call per attempt, which failed.
		if calls := sts.calls(t); len(calls) != n || calls[n-1].Status < 400 {
			t.Fatalf("%s: calls %+v", name, calls)
		}
	}
	// The faults were for one request each: the role verifies now.
	if err := v.Verify(context.Background(), mustParse(t, trustedARN), extID); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyTimeout(t *testing.T) {
	t.Parallel()
	sts := startStandin(t)
	v := newVerifier(t, sts.URL, 200*time.Millisecond)
	sts.fault(t, fmt.Sprintf(`{"delay_ns":%d,"count":1}`, time.Minute))
	err := v.Verify(context.Background(), mustParse(t, trustedARN), extID)
	wantTransient(t, err)
	t.Log(err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("not a deadline error: %v", err)
	}
	noSecrets(t, err)
}

func TestVerifyInvalidARN(t *testing.T) {
	t.Parallel()
	// No STS call is made: the endpoint does not exist.
	v := newVerifier(t, "http://127.0.0.1:1", 0)
	err := v.Verify(context.Background(), arn.Role{Raw: "arn:aws:iam::123:role/x", AccountID: "123"}, extID)
	if failure.IsTransient(err) || failure.CodeOf(err) != status.CG1004 {
		t.Fatalf("got %v, want CG1004", err)
	}
}

func TestVerifyNetworkError(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	endpoint := closed.URL
	closed.Close()
	err := newVerifier(t, endpoint, 0).Verify(context.Background(), mustParse(t, trustedARN), extID)
	wantTransient(t, err)
	t.Log(err)
	noSecrets(t, err)
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	// Real AWS endpoint resolution and the default credential chain: New
	// must not need either to be reachable.
	v, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v.timeout != DefaultTimeout {
		t.Errorf("timeout %v", v.timeout)
	}
	o := v.client.Options()
	if o.Region != DefaultRegion || o.BaseEndpoint != nil || o.Retryer.MaxAttempts() != 1 {
		t.Errorf("region %q, endpoint %v, max attempts %d", o.Region, o.BaseEndpoint, o.Retryer.MaxAttempts())
	}
}

// scripted is a loopback STS that answers as the test says, for what the
// stand-in does not do (hostile or broken answers).
type scripted struct {
	assumeRole        http.HandlerFunc
	getCallerIdentity http.HandlerFunc
}

func (s scripted) start(t *testing.T) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		h := s.getCallerIdentity
		if r.Form.Get("Action") == "AssumeRole" {
			h = s.assumeRole
		}
		if h == nil {
			t.Errorf("unexpected %s", r.Form.Get("Action"))
			return
		}
		h(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

func awsError(w http.ResponseWriter, st int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(st)
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(msg))
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>`+
		`<Code>%s</Code><Message>%s</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`, code, b.String())
}

// Temporary credentials the scripted STS hands out.
const (
	tmpKeyID  = "ASIASCRIPTEDTEST0001"
	tmpSecret = "scripted/temporary+secret+0123456789abcdefg"
	tmpToken  = "scripted-temporary-session-token"
)

func assumeOK(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>`+
		`<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/cloud-meter-trusted/cloudoreg-123456789012</Arn>`+
		`<AssumedRoleId>AROAEXAMPLE:cloudoreg-123456789012</AssumedRoleId></AssumedRoleUser>`+
		`<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken>`+
		`<Expiration>%s</Expiration></Credentials></AssumeRoleResult>`+
		`<ResponseMetadata><RequestId>req-0</RequestId></ResponseMetadata></AssumeRoleResponse>`,
		tmpKeyID, tmpSecret, tmpToken, time.Now().Add(15*time.Minute).UTC().Format(time.RFC3339))
}

func identity(roleARN, account string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>`+
			`<Arn>%s</Arn><UserId>AROAEXAMPLE:x</UserId><Account>%s</Account></GetCallerIdentityResult>`+
			`<ResponseMetadata><RequestId>req-2</RequestId></ResponseMetadata></GetCallerIdentityResponse>`, roleARN, account)
	}
}

// echo answers an error whose message repeats the whole request: body
// (with the external id), Authorization and the session token.
func echo(st int, code string, extra ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		msg := r.PostForm.Encode() + " " + r.Form.Get("ExternalId") + " " + r.Header.Get("Authorization") +
			" " + r.Header.Get("X-Amz-Security-Token") + " " + strings.Join(extra, " ")
		awsError(w, st, code, msg)
	}
}

func TestVerifyScripted(t *testing.T) {
	t.Parallel()
	const trustedSession = "arn:aws:sts::123456789012:assumed-role/cloud-meter-trusted/cloudoreg-123456789012"
	cases := []struct {
		name   string
		sts    scripted
		code   status.Code // "" for transient
		ownErr bool        // wraps ErrServiceCredentials
	}{
		{"echoed invalid external id", scripted{assumeRole: echo(400, "ValidationError")}, status.CG3002, false},
		{"echoed denial", scripted{assumeRole: echo(403, "AccessDenied")}, status.CG3002, false},
		{"our key is unknown", scripted{assumeRole: echo(403, "InvalidClientTokenId")}, "", true},
		{"our signature is wrong", scripted{assumeRole: echo(403, "SignatureDoesNotMatch")}, "", true},
		{"our token expired", scripted{assumeRole: echo(400, "ExpiredToken")}, "", true},
		{"region disabled", scripted{assumeRole: echo(403, "RegionDisabledException")}, status.CG3002, false},
		{"unexpected 4xx code", scripted{assumeRole: echo(400, "SomethingNew")}, status.CG3002, false},
		{"proxy error page", scripted{assumeRole: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		}}, "", false},
		{"credentials missing", scripted{assumeRole: func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult/></AssumeRoleResponse>`)
		}}, "", false},
		{"identity echoes the session", scripted{assumeRole: assumeOK, getCallerIdentity: echo(403, "AccessDenied", tmpSecret)}, status.CG3003, false},
		{"session key rejected", scripted{assumeRole: assumeOK, getCallerIdentity: echo(403, "InvalidClientTokenId")}, status.CG3003, false},
		{"identity throttled", scripted{assumeRole: assumeOK, getCallerIdentity: echo(400, "Throttling")}, "", false},
		{"identity 503", scripted{assumeRole: assumeOK, getCallerIdentity: echo(503, "ServiceUnavailable")}, "", false},
		{"identity of another account", scripted{assumeRole: assumeOK,
			getCallerIdentity: identity("arn:aws:sts::999999999999:assumed-role/cloud-meter-trusted/cloudoreg-123456789012", "999999999999")}, status.CG3003, false},
		{"identity of another partition", scripted{assumeRole: assumeOK,
			getCallerIdentity: identity("arn:aws-cn:sts::123456789012:assumed-role/cloud-meter-trusted/cloudoreg-123456789012", "123456789012")}, status.CG3003, false},
		{"identity is a user", scripted{assumeRole: assumeOK,
			getCallerIdentity: identity("arn:aws:iam::123456789012:user/cloud-meter-trusted", "123456789012")}, status.CG3003, false},
		{"identity of another role", scripted{assumeRole: assumeOK,
			getCallerIdentity: identity("arn:aws:sts::123456789012:assumed-role/other/cloudoreg-123456789012", "123456789012")}, status.CG3003, false},
		{"identity account disagrees", scripted{assumeRole: assumeOK,
			getCallerIdentity: identity(trustedSession, "999999999999")}, status.CG3003, false},
		{"identity differs in role name case", scripted{assumeRole: assumeOK,
			getCallerIdentity: identity(strings.Replace(trustedSession, "cloud-meter-trusted", "Cloud-Meter-Trusted", 1), "123456789012")}, "ok", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tc.sts.start(t), 0)
			err := v.Verify(context.Background(), mustParse(t, trustedARN), extID)
			switch tc.code {
			case "ok":
				if err != nil {
					t.Fatal(err)
				}
			case "":
				wantTransient(t, err)
			default:
				wantPermanent(t, err, tc.code)
			}
			if errors.Is(err, ErrServiceCredentials) != tc.ownErr {
				t.Errorf("ErrServiceCredentials: %v", err)
			}
			t.Log(err)
			noSecrets(t, err, tmpKeyID, tmpSecret, tmpToken, url.QueryEscape(extID))
		})
	}
}

// One test per row of the README's table "How STS answers are classified",
// in its order: AssumeRole against the STS stand-in where it can give the
// answer, else against a loopback server speaking the AWS Query protocol.
func TestClassificationTable(t *testing.T) {
	t.Parallel()
	type want struct {
		code   status.Code // "" for transient
		ownErr bool        // wraps ErrServiceCredentials (and failure.ErrConfiguration)
		text   string      // the cause, exactly
	}
	rows := []struct {
		row    string
		verify func(t *testing.T) error
		want   want
	}{
		{"AssumeRole AccessDenied", func(t *testing.T) error {
			return newVerifier(t, startStandin(t).URL, 0).Verify(context.Background(), mustParse(t, deniedARN), extID)
		}, want{code: status.CG3002, text: "AssumeRole: AccessDenied (HTTP 403, request id "}},
		{"AssumeRole ValidationError (a one-character external id)", func(t *testing.T) error {
			return newVerifier(t, startStandin(t).URL, 0).Verify(context.Background(), mustParse(t, openARN), "x")
		}, want{code: status.CG3002, text: "AssumeRole: ValidationError (HTTP 400, request id "}},
		{"AssumeRole RegionDisabledException", scriptedVerify(scripted{assumeRole: echo(403, "RegionDisabledException")}),
			want{code: status.CG3002, text: `AssumeRole: RegionDisabledException (HTTP 403, request id req-1)`}},
		{"AssumeRole another client error", scriptedVerify(scripted{assumeRole: echo(400, "MalformedPolicyDocument")}),
			want{code: status.CG3002, text: `AssumeRole: MalformedPolicyDocument (HTTP 400, request id req-1)`}},
		{"AssumeRole InvalidClientTokenId", scriptedVerify(scripted{assumeRole: echo(403, "InvalidClientTokenId")}),
			want{ownErr: true, text: `AssumeRole: InvalidClientTokenId (HTTP 403, request id req-1)`}},
		{"AssumeRole SignatureDoesNotMatch", scriptedVerify(scripted{assumeRole: echo(403, "SignatureDoesNotMatch")}),
			want{ownErr: true, text: `AssumeRole: SignatureDoesNotMatch (HTTP 403, request id req-1)`}},
		{"AssumeRole ExpiredToken", scriptedVerify(scripted{assumeRole: echo(400, "ExpiredToken")}),
			want{ownErr: true, text: `AssumeRole: ExpiredToken (HTTP 400, request id req-1)`}},
		{"Throttling", func(t *testing.T) error {
			sts := startStandin(t)
			sts.fault(t, `{"status":400,"code":"Throttling","count":1}`)
			return newVerifier(t, sts.URL, 0).Verify(context.Background(), mustParse(t, trustedARN), extID)
		}, want{text: "AssumeRole: Throttling (HTTP 400, request id "}},
		{"ThrottlingException on GetCallerIdentity", scriptedVerify(scripted{assumeRole: assumeOK, getCallerIdentity: echo(400, "ThrottlingException")}),
			want{text: `GetCallerIdentity: ThrottlingException (HTTP 400, request id req-1)`}},
		{"RequestLimitExceeded", scriptedVerify(scripted{assumeRole: echo(400, "RequestLimitExceeded")}),
			want{text: `AssumeRole: RequestLimitExceeded (HTTP 400, request id req-1)`}},
		{"5xx", func(t *testing.T) error {
			sts := startStandin(t)
			sts.fault(t, `{"status":503,"count":1}`)
			return newVerifier(t, sts.URL, 0).Verify(context.Background(), mustParse(t, trustedARN), extID)
		}, want{text: "AssumeRole: ServiceUnavailable (HTTP 503, request id "}},
		{"5xx with a client error code", scriptedVerify(scripted{assumeRole: echo(500, "AccessDenied")}),
			want{text: `AssumeRole: AccessDenied (HTTP 500, request id req-1)`}},
		{"timeout", func(t *testing.T) error {
			sts := startStandin(t)
			sts.fault(t, fmt.Sprintf(`{"delay_ns":%d,"count":1}`, time.Minute))
			return newVerifier(t, sts.URL, 200*time.Millisecond).Verify(context.Background(), mustParse(t, trustedARN), extID)
		}, want{text: "AssumeRole: timed out: context deadline exceeded"}},
		{"GetCallerIdentity AccessDenied", func(t *testing.T) error {
			return newVerifier(t, startStandin(t).URL, 0).Verify(context.Background(), mustParse(t, noGCIARN), "")
		}, want{code: status.CG3003, text: "GetCallerIdentity: AccessDenied (HTTP 403, request id "}},
		{"GetCallerIdentity ExpiredToken (of the role's session)", scriptedVerify(scripted{assumeRole: assumeOK, getCallerIdentity: echo(400, "ExpiredToken")}),
			want{code: status.CG3003, text: `GetCallerIdentity: ExpiredToken (HTTP 400, request id req-1)`}},
	}
	for _, r := range rows {
		t.Run(r.row, func(t *testing.T) {
			t.Parallel()
			err := r.verify(t)
			if r.want.code == "" {
				wantTransient(t, err)
			} else {
				wantPermanent(t, err, r.want.code)
			}
			if errors.Is(err, ErrServiceCredentials) != r.want.ownErr || errors.Is(err, failure.ErrConfiguration) != r.want.ownErr {
				t.Errorf("ErrServiceCredentials/ErrConfiguration should be %v: %v", r.want.ownErr, err)
			}
			var fe *failure.Error
			if !errors.As(err, &fe) {
				t.Fatalf("unclassified: %v", err)
			}
			cause := fe.Err.Error()
			if r.want.ownErr {
				cause = strings.TrimPrefix(cause, ErrServiceCredentials.Error()+": ")
			}
			if !strings.HasPrefix(cause, r.want.text) || (strings.HasSuffix(r.want.text, ")") && cause != r.want.text) {
				t.Errorf("cause %q, want %q", cause, r.want.text)
			}
			noSecrets(t, err, tmpKeyID, tmpSecret, tmpToken)
		})
	}
}

func scriptedVerify(s scripted) func(t *testing.T) error {
	return func(t *testing.T) error {
		return newVerifier(t, s.start(t), 0).Verify(context.Background(), mustParse(t, trustedARN), extID)
	}
}

// For any external id, a one-character one included, the error text is
// exactly what it would be without any secret: AWS's message (which here
// quotes the request, the external id and our credentials, as AWS quotes an
// invalid external id) never reaches it, and nothing is cut out of it.
func TestErrorTextDoesNotDependOnTheExternalID(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@:/-"
	ids := []string{"x", "a", "S", "T", "s", ":", "/", "-", "ss", "AssumeRole", "ValidationError", "HTTP", "req-1"}
	for range 60 {
		b := make([]byte, 1+rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		ids = append(ids, string(b))
	}
	for _, answer := range []struct {
		status int
		code   string
		want   string
	}{
		{400, "ValidationError", "sts: permanent CG3002 failure: AssumeRole: ValidationError (HTTP 400, request id req-1)"},
		{403, "AccessDenied", "sts: permanent CG3002 failure: AssumeRole: AccessDenied (HTTP 403, request id req-1)"},
		{400, "Throttling", "sts: transient failure: AssumeRole: Throttling (HTTP 400, request id req-1)"},
	} {
		v := newVerifier(t, scripted{assumeRole: echo(answer.status, answer.code)}.start(t), 0)
		for _, ext := range ids {
			err := v.Verify(context.Background(), mustParse(t, trustedARN), ext)
			if err == nil || err.Error() != answer.want {
				t.Fatalf("external id %q: error %q, want %q", ext, err, answer.want)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	if got := truncate("ééé", 3); got != "é..." {
		t.Errorf("truncate: %q", got)
	}
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate: %q", got)
	}
}

func TestTokenRepeatsOnlyIdentifiers(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"AccessDenied": "AccessDenied", "c0a8e2b4-1f2e-4b5a-9c3d-7e6f5a4b3c2d": "c0a8e2b4-1f2e-4b5a-9c3d-7e6f5a4b3c2d",
		"": "(none)", "Access Denied": "(malformed)", "<x>": "(malformed)", strings.Repeat("a", 129): "(malformed)",
	} {
		if got := token(in); got != want {
			t.Errorf("token(%q) = %q, want %q", in, got, want)
		}
	}
}

// With the SDK's default chain (web identity in a pod), getting Cloudoreg's
// own credentials is itself an STS call, made inside AssumeRole. Its errors,
// AccessDenied included, are Cloudoreg's configuration, never the customer's.
func TestCredentialChainErrorsAreOurs(t *testing.T) {
	t.Parallel()
	chain := func(code string, st int) error {
		inner := &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRoleWithWebIdentity",
			Err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: st}},
				Err: &smithy.GenericAPIError{Code: code, Message: "quotes " + extID}}, RequestID: "req-9"}}
		return &smithy.OperationError{ServiceID: "STS", OperationName: opAssumeRole, Err: fmt.Errorf("get identity: %w", inner)}
	}
	for _, tc := range []struct {
		code   string
		status int
		ownErr bool
	}{
		{"AccessDenied", 403, true},
		{"InvalidIdentityToken", 400, true},
		{"ExpiredTokenException", 400, true},
		{"Throttling", 400, false},
		{"ServiceUnavailable", 503, false},
	} {
		err := classify(opAssumeRole, chain(tc.code, tc.status))
		wantTransient(t, err)
		if errors.Is(err, ErrServiceCredentials) != tc.ownErr {
			t.Errorf("%s: ErrServiceCredentials should be %v: %v", tc.code, tc.ownErr, err)
		}
		if want := "AssumeRole: getting Cloudoreg's credentials: AssumeRoleWithWebIdentity: " + tc.code; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to contain %q", tc.code, err, want)
		}
		noSecrets(t, err)
	}
	// The customer's own answer to AssumeRole is still theirs.
	own := &smithy.OperationError{ServiceID: "STS", OperationName: opAssumeRole,
		Err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 403}},
			Err: &smithy.GenericAPIError{Code: "AccessDenied"}}, RequestID: "req-9"}}
	wantPermanent(t, classify(opAssumeRole, own), status.CG3002)
}
