package sts

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
)

const (
	trustedARN = "arn:aws:iam::123456789012:role/cloud-meter-trusted"
	deniedARN  = "arn:aws:iam::210987654321:role/cloud-meter-denied"
	noGCIARN   = "arn:aws:iam::345678901234:role/cloud-meter-no-policy"
	openARN    = "arn:aws:iam::456789012345:role/cloud-meter-open"
	zeroARN    = "arn:aws:iam::012345678901:role/cloud-meter-leading-zero"
	extID      = "cloudoreg-demo-external-id"
	policy     = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}`
)

var serviceCreds = aws.Credentials{AccessKeyID: "AKIASERVICEEXAMPLE01", SecretAccessKey: "service-secret"}

// start runs a stand-in with the shipped default trust table on loopback.
func start(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	trust, err := LoadTrust(defaultTrustFile(t))
	if err != nil {
		t.Fatal(err)
	}
	s := New(trust, nil)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func defaultTrustFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join("..", "..", "..", "scripts", "sts-trust.json")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("default trust file: %v", err)
	}
	return p
}

// client is the real SDK client, pointed at the stand-in, without retries.
func client(endpoint string, creds aws.Credentials) *awssts.Client {
	return awssts.New(awssts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		}),
		Retryer: aws.NopRetryer{},
	})
}

func assume(ctx context.Context, c *awssts.Client, arn, session string, ext *string) (*awssts.AssumeRoleOutput, error) {
	return c.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn:         aws.String(arn),
		RoleSessionName: aws.String(session),
		ExternalId:      ext,
		Policy:          aws.String(policy),
		DurationSeconds: aws.Int32(900),
	})
}

func tempCreds(out *awssts.AssumeRoleOutput) aws.Credentials {
	return aws.Credentials{
		AccessKeyID:     aws.ToString(out.Credentials.AccessKeyId),
		SecretAccessKey: aws.ToString(out.Credentials.SecretAccessKey),
		SessionToken:    aws.ToString(out.Credentials.SessionToken),
	}
}

// apiError asserts err is an AWS API error with code and HTTP status.
func apiError(t *testing.T, err error, code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want API error %s, got %v", code, err)
	}
	if ae.ErrorCode() != code {
		t.Errorf("code = %q, want %q (%v)", ae.ErrorCode(), code, err)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("no HTTP response error in %v", err)
	}
	if re.HTTPStatusCode() != status {
		t.Errorf("HTTP status = %d, want %d", re.HTTPStatusCode(), status)
	}
	if re.ServiceRequestID() == "" {
		t.Error("no request id parsed from the error")
	}
}

func TestDefaultTrustFile(t *testing.T) {
	trust, err := LoadTrust(defaultTrustFile(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Role{
		trustedARN: {ARN: trustedARN, ExternalID: extID, AssumeRole: Allow, GetCallerIdentity: Allow},
		deniedARN:  {ARN: deniedARN, AssumeRole: Deny, GetCallerIdentity: Allow},
		noGCIARN:   {ARN: noGCIARN, AssumeRole: Allow, GetCallerIdentity: Deny},
		openARN:    {ARN: openARN, AssumeRole: Allow, GetCallerIdentity: Allow},
		zeroARN:    {ARN: zeroARN, ExternalID: extID, AssumeRole: Allow, GetCallerIdentity: Allow},
	}
	got := map[string]Role{}
	for _, r := range trust.Roles {
		r.Comment = ""
		got[r.ARN] = r
	}
	for arn, w := range want {
		if got[arn] != w {
			t.Errorf("role %s = %+v, want %+v", arn, got[arn], w)
		}
	}
}

func TestLoadTrustRejectsBadTables(t *testing.T) {
	cases := map[string]string{
		"unknown field":   `{"roles":[{"arn":"arn:aws:iam::123456789012:role/x","assume":"allow"}]}`,
		"bad permission":  `{"roles":[{"arn":"arn:aws:iam::123456789012:role/x","assume_role":"yes"}]}`,
		"duplicate arn":   `{"roles":[{"arn":"arn:aws:iam::123456789012:role/x"},{"arn":"arn:aws:iam::123456789012:role/x"}]}`,
		"not a role arn":  `{"roles":[{"arn":"arn:aws:iam::123456789012:user/x"}]}`,
		"short account":   `{"roles":[{"arn":"arn:aws:iam::12345678901:role/x"}]}`,
		"trailing data":   `{"roles":[]} {}`,
		"not json at all": `roles: []`,
	}
	dir := t.TempDir()
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadTrust(p); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := LoadTrust(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestAssumeRoleAndGetCallerIdentity(t *testing.T) {
	s, hs := start(t)
	ctx := context.Background()
	svc := client(hs.URL, serviceCreds)

	out, err := assume(ctx, svc, trustedARN, "cloudoreg-123456789012", aws.String(extID))
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	if ak := aws.ToString(c.AccessKeyId); !regexp.MustCompile(`^ASIA[A-Z2-7]{16}$`).MatchString(ak) {
		t.Errorf("access key id %q", ak)
	}
	if len(aws.ToString(c.SecretAccessKey)) != 40 || aws.ToString(c.SessionToken) == "" {
		t.Error("secret or session token missing")
	}
	if exp := aws.ToTime(c.Expiration); exp.Before(time.Now().Add(14*time.Minute)) || exp.After(time.Now().Add(16*time.Minute)) {
		t.Errorf("expiration %v is not about 15 minutes away", exp)
	}
	wantARN := "arn:aws:sts::123456789012:assumed-role/cloud-meter-trusted/cloudoreg-123456789012"
	if got := aws.ToString(out.AssumedRoleUser.Arn); got != wantARN {
		t.Errorf("assumed role arn %q, want %q", got, wantARN)
	}
	if id := aws.ToString(out.AssumedRoleUser.AssumedRoleId); !strings.HasPrefix(id, "AROA") || !strings.HasSuffix(id, ":cloudoreg-123456789012") {
		t.Errorf("assumed role id %q", id)
	}
	if aws.ToInt32(out.PackedPolicySize) <= 0 { //nolint:staticcheck // SA1019: the field the stand-in fills, as STS does
		t.Error("no packed policy size for a request with a policy")
	}

	// A second AssumeRole gets fresh credentials.
	out2, err := assume(ctx, svc, trustedARN, "cloudoreg-123456789012", aws.String(extID))
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out2.Credentials.AccessKeyId) == aws.ToString(c.AccessKeyId) {
		t.Error("access key reused")
	}

	id, err := client(hs.URL, tempCreds(out)).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Arn) != wantARN || aws.ToString(id.Account) != "123456789012" ||
		aws.ToString(id.UserId) != aws.ToString(out.AssumedRoleUser.AssumedRoleId) {
		t.Errorf("identity %s %s %s", aws.ToString(id.Arn), aws.ToString(id.Account), aws.ToString(id.UserId))
	}

	own, err := svc.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(own.Arn) != ServiceUserARN || aws.ToString(own.Account) != ServiceAccount {
		t.Errorf("service identity %s %s", aws.ToString(own.Arn), aws.ToString(own.Account))
	}

	calls := s.Calls()
	if len(calls) != 4 {
		t.Fatalf("%d calls recorded, want 4: %+v", len(calls), calls)
	}
	first := calls[0]
	if first.Action != "AssumeRole" || first.RoleARN != trustedARN || first.RoleSessionName != "cloudoreg-123456789012" ||
		!first.ExternalIDSent || first.ExternalID != extID || !first.PolicySent || first.Policy != policy ||
		first.DurationSeconds != 900 || first.AccessKeyID != serviceCreds.AccessKeyID || first.Status != 200 || first.ErrorCode != "" ||
		first.Time.IsZero() {
		t.Errorf("first call %+v", first)
	}
	if calls[2].Action != "GetCallerIdentity" || calls[2].AccessKeyID != aws.ToString(c.AccessKeyId) || calls[2].ExternalIDSent || calls[2].PolicySent {
		t.Errorf("identity call %+v", calls[2])
	}
}

func TestLeadingZeroAccount(t *testing.T) {
	_, hs := start(t)
	ctx := context.Background()
	out, err := assume(ctx, client(hs.URL, serviceCreds), zeroARN, "cloudoreg-012345678901", aws.String(extID))
	if err != nil {
		t.Fatal(err)
	}
	id, err := client(hs.URL, tempCreds(out)).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(id.Account) != "012345678901" ||
		aws.ToString(id.Arn) != "arn:aws:sts::012345678901:assumed-role/cloud-meter-leading-zero/cloudoreg-012345678901" {
		t.Errorf("identity %s %s", aws.ToString(id.Arn), aws.ToString(id.Account))
	}
}

func TestPartitionIsKept(t *testing.T) {
	gov := "arn:aws-us-gov:iam::123456789012:role/path/to/gov-role"
	s, hs := start(t)
	s.SetTrust(Trust{Roles: []Role{{ARN: gov}}})
	out, err := assume(context.Background(), client(hs.URL, serviceCreds), gov, "cloudoreg-123456789012", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(out.AssumedRoleUser.Arn); got != "arn:aws-us-gov:sts::123456789012:assumed-role/gov-role/cloudoreg-123456789012" {
		t.Errorf("assumed role arn %q", got)
	}
	if c := s.Calls()[0]; c.ExternalIDSent {
		t.Errorf("external id recorded as sent: %+v", c)
	}
}

func TestAssumeRoleDenied(t *testing.T) {
	cases := []struct {
		name string
		arn  string
		ext  *string
	}{
		{"unknown role", "arn:aws:iam::999999999999:role/nobody", aws.String(extID)},
		{"external id missing", trustedARN, nil},
		{"external id wrong", trustedARN, aws.String("someone-elses-id")},
		{"assume_role deny", deniedARN, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, hs := start(t)
			_, err := assume(context.Background(), client(hs.URL, serviceCreds), tc.arn, "cloudoreg-x1", tc.ext)
			apiError(t, err, "AccessDenied", http.StatusForbidden)
			if !strings.Contains(err.Error(), "is not authorized to perform: sts:AssumeRole") {
				t.Errorf("message: %v", err)
			}
			calls := s.Calls()
			if len(calls) != 1 || calls[0].Status != 403 || calls[0].ErrorCode != "AccessDenied" || calls[0].ExternalIDSent != (tc.ext != nil) {
				t.Errorf("calls %+v", calls)
			}
		})
	}
}

func TestGetCallerIdentityDenied(t *testing.T) {
	s, hs := start(t)
	ctx := context.Background()
	svc := client(hs.URL, serviceCreds)

	out, err := assume(ctx, svc, noGCIARN, "cloudoreg-345678901234", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client(hs.URL, tempCreds(out)).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	apiError(t, err, "AccessDenied", http.StatusForbidden)

	// Flip a role to deny at run time: credentials issued before follow the
	// new table.
	out, err = assume(ctx, svc, openARN, "cloudoreg-456789012345", nil)
	if err != nil {
		t.Fatal(err)
	}
	trust := s.Trust()
	for i := range trust.Roles {
		if trust.Roles[i].ARN == openARN {
			trust.Roles[i].GetCallerIdentity = Deny
		}
	}
	s.SetTrust(trust)
	_, err = client(hs.URL, tempCreds(out)).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	apiError(t, err, "AccessDenied", http.StatusForbidden)
}

func TestIssuedKeyNeedsItsSessionToken(t *testing.T) {
	_, hs := start(t)
	ctx := context.Background()
	out, err := assume(ctx, client(hs.URL, serviceCreds), openARN, "cloudoreg-456789012345", nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := tempCreds(out)
	creds.SessionToken = "forged"
	_, err = client(hs.URL, creds).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	apiError(t, err, "InvalidClientTokenId", http.StatusForbidden)
}

func TestValidation(t *testing.T) {
	_, hs := start(t)
	ctx := context.Background()
	svc := client(hs.URL, serviceCreds)

	_, err := svc.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn: aws.String(openARN), RoleSessionName: aws.String("has space"),
	})
	apiError(t, err, "ValidationError", http.StatusBadRequest)

	_, err = svc.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn: aws.String(openARN), RoleSessionName: aws.String("ok-name"), DurationSeconds: aws.Int32(7200),
	})
	apiError(t, err, "ValidationError", http.StatusBadRequest)

	_, err = svc.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn: aws.String(openARN), RoleSessionName: aws.String("ok-name"), ExternalId: aws.String("bad id"),
	})
	apiError(t, err, "ValidationError", http.StatusBadRequest)

	_, err = svc.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn: aws.String(openARN), RoleSessionName: aws.String("ok-name"), Policy: aws.String("{not json"),
	})
	apiError(t, err, "MalformedPolicyDocument", http.StatusBadRequest)

	_, err = svc.AssumeRole(ctx, &awssts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws:iam::1234:role/x"), RoleSessionName: aws.String("ok-name"),
	})
	apiError(t, err, "ValidationError", http.StatusBadRequest)
}

// wireError is the AWS Query error document.
type wireError struct {
	XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ ErrorResponse"`
	Type    string   `xml:"Error>Type"`
	Code    string   `xml:"Error>Code"`
	Message string   `xml:"Error>Message"`
	ID      string   `xml:"RequestId"`
}

func post(t *testing.T, hs *httptest.Server, form url.Values, authorization string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, hs.URL+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

const sigv4 = "AWS4-HMAC-SHA256 Credential=AKIASERVICEEXAMPLE01/20260101/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"

func TestWireFormat(t *testing.T) {
	_, hs := start(t)
	resp, body := post(t, hs, url.Values{"Action": {"GetCallerIdentity"}, "Version": {APIVersion}}, sigv4)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/xml" || resp.Header.Get("x-amzn-RequestId") == "" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var ok struct {
		XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ GetCallerIdentityResponse"`
		Arn     string   `xml:"GetCallerIdentityResult>Arn"`
		Account string   `xml:"GetCallerIdentityResult>Account"`
		UserID  string   `xml:"GetCallerIdentityResult>UserId"`
		ID      string   `xml:"ResponseMetadata>RequestId"`
	}
	if err := xml.Unmarshal(body, &ok); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if ok.Arn != ServiceUserARN || ok.Account != ServiceAccount || ok.UserID == "" || ok.ID != resp.Header.Get("x-amzn-RequestId") {
		t.Errorf("%+v", ok)
	}

	cases := []struct {
		name   string
		form   url.Values
		auth   string
		status int
		code   string
	}{
		{"unsigned", url.Values{"Action": {"GetCallerIdentity"}}, "", 403, "MissingAuthenticationToken"},
		{"no action", url.Values{"Version": {APIVersion}}, sigv4, 400, "MissingAction"},
		{"unknown action", url.Values{"Action": {"GetSessionToken"}}, sigv4, 400, "InvalidAction"},
		{"wrong version", url.Values{"Action": {"GetCallerIdentity"}, "Version": {"2010-01-01"}}, sigv4, 400, "InvalidAction"},
		{"no role arn", url.Values{"Action": {"AssumeRole"}, "RoleSessionName": {"abc"}}, sigv4, 400, "ValidationError"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, hs, tc.form, tc.auth)
			var e wireError
			if err := xml.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Type != "Sender" || e.Message == "" || e.ID == "" {
				t.Errorf("%d %+v", resp.StatusCode, e)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		fault  faults.Fault
		status int
		code   string
		typ    string
	}{
		{faults.Fault{Status: 400, Count: 1}, 400, "Throttling", "Sender"},
		{faults.Fault{Status: 400, Code: "RequestLimitExceeded", Count: 1}, 400, "RequestLimitExceeded", "Sender"},
		{faults.Fault{Status: 503, Count: 1}, 503, "ServiceUnavailable", "Receiver"},
		{faults.Fault{Status: 500, Count: 1}, 500, "InternalFailure", "Receiver"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			s, hs := start(t)
			s.Faults().Set(tc.fault)
			resp, body := post(t, hs, url.Values{"Action": {"GetCallerIdentity"}}, sigv4)
			var e wireError
			if err := xml.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Type != tc.typ || e.Message == "" {
				t.Errorf("%d %+v", resp.StatusCode, e)
			}
			// The SDK sees the same, and the fault is spent after Count.
			s.Faults().Set(tc.fault)
			_, err := client(hs.URL, serviceCreds).GetCallerIdentity(context.Background(), &awssts.GetCallerIdentityInput{})
			apiError(t, err, tc.code, tc.status)
			if _, err := client(hs.URL, serviceCreds).GetCallerIdentity(context.Background(), &awssts.GetCallerIdentityInput{}); err != nil {
				t.Errorf("after the fault: %v", err)
			}
			calls := s.Calls()
			if len(calls) != 3 || calls[0].Status != tc.status || calls[0].ErrorCode != tc.code || calls[2].Status != 200 {
				t.Errorf("calls %+v", calls)
			}
		})
	}
}

func TestDelayFaultAndClientTimeout(t *testing.T) {
	s, hs := start(t)
	s.Faults().Set(faults.Fault{Delay: time.Minute, Count: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := client(hs.URL, serviceCreds).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
}

func TestAdminOverHTTP(t *testing.T) {
	s, hs := start(t)
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	ctx := context.Background()
	svc := client(hs.URL, serviceCreds)

	// Replace the table: only one role, denied.
	table := `{"roles":[{"arn":"` + openARN + `","assume_role":"deny"}]}`
	if resp := do(http.MethodPost, TrustPath, table); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST %s: %d", TrustPath, resp.StatusCode)
	}
	_, err := assume(ctx, svc, openARN, "cloudoreg-456789012345", nil)
	apiError(t, err, "AccessDenied", 403)
	_, err = assume(ctx, svc, trustedARN, "cloudoreg-123456789012", aws.String(extID))
	apiError(t, err, "AccessDenied", 403)
	if resp := do(http.MethodPost, TrustPath, `{"roles":[{"arn":"x"}]}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid table: %d", resp.StatusCode)
	}
	var got Trust
	if err := json.NewDecoder(do(http.MethodGet, TrustPath, "").Body).Decode(&got); err != nil || len(got.Roles) != 1 || got.Roles[0].AssumeRole != Deny {
		t.Errorf("GET %s: %+v %v", TrustPath, got, err)
	}

	// Faults over HTTP are not recorded as calls, and admin routes are never faulted.
	if resp := do(http.MethodPost, faults.AdminPath, `{"status":503}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST %s: %d", faults.AdminPath, resp.StatusCode)
	}
	_, err = svc.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	apiError(t, err, "ServiceUnavailable", 503)

	var calls []Call
	resp := do(http.MethodGet, CallsPath, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", CallsPath, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls[1].ExternalID != extID || !calls[1].ExternalIDSent || calls[2].Status != 503 {
		t.Errorf("calls %+v", calls)
	}

	if resp := do(http.MethodDelete, CallsPath, ""); resp.StatusCode != http.StatusNoContent || len(s.Calls()) != 0 {
		t.Errorf("DELETE %s: %d, %d calls left", CallsPath, resp.StatusCode, len(s.Calls()))
	}
	if resp := do(http.MethodPost, ResetPath, ""); resp.StatusCode != http.StatusNoContent {
		t.Errorf("POST %s: %d", ResetPath, resp.StatusCode)
	}
	if _, err := svc.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{}); err != nil {
		t.Errorf("fault survived reset: %v", err)
	}
	var empty []Call
	if err := json.NewDecoder(do(http.MethodPost, ResetPath, "").Body).Decode(&empty); err != io.EOF {
		t.Errorf("reset answered a body: %v", err)
	}
	if resp := do(http.MethodPut, CallsPath, ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT %s: %d", CallsPath, resp.StatusCode)
	}
}

// Every external id AWS rejects (shorter than 2 or longer than 1224
// characters, or a character outside [\w+=,.@:/-]) is a ValidationError,
// HTTP 400, in AWS's Query error document, whose message never contains the
// id; every id AWS accepts passes. Random ids of both kinds, the limits
// exactly, and one-character ids of every allowed character.
func TestExternalIDValidation(t *testing.T) {
	_, hs := start(t)
	svc := client(hs.URL, serviceCreds)
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@:/-"
	rng := rand.New(rand.NewPCG(1, 2))
	randomID := func(n int, alphabet string) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	var valid, invalid []string
	valid = append(valid, strings.Repeat("a", 2), strings.Repeat("Z", 1224), allowed)
	invalid = append(invalid, "", strings.Repeat("a", 1225), "has space", "ünïcode", "semi;colon", "quote'", "<xml>")
	for _, c := range allowed {
		invalid = append(invalid, string(c))
	}
	for range 40 {
		valid = append(valid, randomID(2+rng.IntN(1223), allowed))
		bad := []byte(randomID(2+rng.IntN(60), allowed))
		bad[rng.IntN(len(bad))] = " !#$%&'()*;<>?[]^`{|}~\"\\"[rng.IntN(24)]
		invalid = append(invalid, string(bad), randomID(1225+rng.IntN(500), allowed))
	}

	ctx := context.Background()
	for _, ext := range valid {
		if _, err := assume(ctx, svc, openARN, "cloudoreg-456789012345", aws.String(ext)); err != nil {
			t.Errorf("valid external id of %d characters refused: %v", len(ext), err)
		}
	}
	messages := map[string]bool{}
	for _, ext := range invalid {
		_, err := assume(ctx, svc, openARN, "cloudoreg-456789012345", aws.String(ext))
		apiError(t, err, "ValidationError", http.StatusBadRequest)
		var ae smithy.APIError
		if errors.As(err, &ae) {
			messages[ae.ErrorMessage()] = true
		}
		if len(ext) >= 2 && strings.Contains(err.Error(), ext) {
			t.Errorf("the error echoes the external id: %v", err)
		}
	}
	// The message names the constraint only: one text per constraint, the
	// same whatever the id, so a one-character id cannot be in it either.
	if len(messages) != 3 {
		t.Errorf("%d distinct messages, want one per constraint: %v", len(messages), messages)
	}

	// On the wire, as AWS writes it.
	resp, body := post(t, hs, url.Values{"Action": {"AssumeRole"}, "Version": {APIVersion}, "RoleArn": {openARN},
		"RoleSessionName": {"cloudoreg-456789012345"}, "ExternalId": {"x"}}, sigv4)
	var e wireError
	if err := xml.Unmarshal(body, &e); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if resp.StatusCode != http.StatusBadRequest || e.Code != "ValidationError" || e.Type != "Sender" || e.ID == "" ||
		e.Message != "1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must have length greater than or equal to 2" {
		t.Errorf("%d %+v", resp.StatusCode, e)
	}
}
