package rhsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	standin "github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"unicode/utf8"
)

const (
	orgA    = "111111"
	orgB    = "222222"
	awsAcct = "000123456789"
	source  = "42"
)

// start serves f over loopback and returns a client of it configured by cfg
// (BaseURL is filled in).
func start(t *testing.T, f *fakeRHSM, cfg Config) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg.BaseURL = srv.URL + standin.DefaultPrefix
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, srv
}

func wantTransient(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("got nil, want a transient failure")
	}
	var fe *failure.Error
	if !errors.As(err, &fe) || !fe.Transient || failure.TargetOf(err) != Target {
		t.Fatalf("got %v (%T), want a transient rhsm failure", err, err)
	}
	if errors.Is(err, failure.ErrConflict) {
		t.Fatalf("transient failure %v wraps ErrConflict", err)
	}
}

func wantPermanent(t *testing.T, err error, code status.Code) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Transient || failure.CodeOf(err) != code || failure.TargetOf(err) != Target {
		t.Fatalf("got %v, want a permanent rhsm failure %s", err, code)
	}
}

func TestRegister(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	if err := c.Register(ctx, orgA, awsAcct, source); err != nil {
		t.Fatalf("Register: %v", err)
	}
	want := []Account{{ID: awsAcct, Nickname: "", SourceID: source, Verified: true}}
	if got := f.registrations(orgA); !reflect.DeepEqual(got, want) {
		t.Fatalf("registered %v, want %v", got, want)
	}

	// The request is the one docs/contract.md ("RHSM Cloud Access API")
	// describes, byte for byte in meaning.
	req := f.recorded()[0]
	if req.Method != http.MethodPost || req.Path != "/management/v1/cloud_access_providers/AWS/accounts" {
		t.Fatalf("request %s %s", req.Method, req.Path)
	}
	if got := req.Header.Get(OrgHeader); got != orgA {
		t.Fatalf("%s: %q", OrgHeader, got)
	}
	if got := req.Header.Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type: %q", got)
	}
	var body []map[string]any
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatalf("body %s: %v", req.Body, err)
	}
	wantBody := []map[string]any{{"id": awsAcct, "nickname": "", "verified": true, "sourceId": source}}
	if !reflect.DeepEqual(body, wantBody) {
		t.Fatalf("body %s, want %v", req.Body, wantBody)
	}
	if got := req.Header.Get("Authorization"); got != "" {
		t.Fatalf("unconfigured client sent Authorization %q", got)
	}
}

func TestRegisterTwiceSameOrg(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	if err := c.Register(ctx, orgA, awsAcct, source); err != nil {
		t.Fatal(err)
	}
	err := c.Register(ctx, orgA, awsAcct, source)
	if !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("second Register: %v, want ErrConflict", err)
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		t.Fatalf("conflict %v is classified; the caller decides", err)
	}
	got, err := c.Enabled(ctx, orgA)
	if err != nil {
		t.Fatal(err)
	}
	want := []Account{{ID: awsAcct, SourceID: source, Verified: true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Enabled %v, want %v", got, want)
	}

	for _, c2 := range []struct {
		acct, src string
		want      bool
	}{{awsAcct, source, true}, {awsAcct, "other", false}, {"000000000001", source, false}} {
		if got, err := c.Registered(ctx, orgA, c2.acct, c2.src); err != nil || got != c2.want {
			t.Fatalf("Registered(%s, %s) = %v, %v; want %v", c2.acct, c2.src, got, err, c2.want)
		}
	}

	// Where RHSM accepts the same org's re-registration, so does the client.
	f.mu.Lock()
	f.sameOrgOK = true
	f.mu.Unlock()
	if err := c.Register(ctx, orgA, awsAcct, source); err != nil {
		t.Fatalf("Register with same-org re-registration allowed: %v", err)
	}
}

func TestRegisterOtherOrg(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	if err := c.Register(ctx, orgB, awsAcct, "7"); err != nil {
		t.Fatal(err)
	}
	err := c.Register(ctx, orgA, awsAcct, source)
	if !errors.Is(err, failure.ErrConflict) {
		t.Fatalf("Register of another org's account: %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), awsAcct) {
		t.Fatalf("conflict error %q lacks the status or account", err)
	}
	ours, err := c.Enabled(ctx, orgA)
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) != 0 {
		t.Fatalf("Enabled(ours) = %v, want none", ours)
	}
	if held, err := c.Registered(ctx, orgA, awsAcct, source); err != nil || held {
		t.Fatalf("Registered(ours) = %v, %v; want false", held, err)
	}
	answer(f, http.StatusServiceUnavailable, `{}`)
	_, err = c.Registered(ctx, orgA, awsAcct, source)
	wantTransient(t, err)
	f.setIntercept(nil)
	theirs, err := c.Enabled(ctx, orgB)
	if err != nil || len(theirs) != 1 || theirs[0].ID != awsAcct {
		t.Fatalf("Enabled(theirs) = %v, %v", theirs, err)
	}
}

func TestRemove(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	if err := c.Register(ctx, orgA, awsAcct, source); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, orgA, source); err != nil {
		t.Fatalf("Remove (204): %v", err)
	}
	if err := c.Remove(ctx, orgA, source); err != nil {
		t.Fatalf("Remove (404): %v", err)
	}
	reqs := f.recorded()
	for _, r := range reqs[1:] {
		if r.Method != http.MethodDelete || r.Path != "/management/v1/cloud_access_providers/accounts" ||
			r.Query != "sourceID="+source || r.Header.Get(OrgHeader) != orgA {
			t.Fatalf("remove request %s %s?%s org %q", r.Method, r.Path, r.Query, r.Header.Get(OrgHeader))
		}
	}
	if got, err := c.Enabled(ctx, orgA); err != nil || len(got) != 0 {
		t.Fatalf("Enabled after Remove = %v, %v", got, err)
	}

	// A source id with URL-special characters is escaped.
	if err := c.Remove(ctx, orgA, "a&b=c"); err != nil {
		t.Fatal(err)
	}
	if q := f.recorded()[len(f.recorded())-1].Query; q != "sourceID=a%26b%3Dc" {
		t.Fatalf("query %q", q)
	}
}

func TestInputChecks(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	wantPermanent(t, c.Register(ctx, "", awsAcct, source), status.CR4001)
	wantPermanent(t, c.Register(ctx, " ", awsAcct, source), status.CR4001)
	wantPermanent(t, c.Register(ctx, "1\n2", awsAcct, source), status.CR4000)
	wantPermanent(t, c.Remove(ctx, "", source), status.CR4001)
	wantPermanent(t, c.Remove(ctx, orgA, ""), status.CR4000)
	_, err := c.Enabled(ctx, "")
	wantPermanent(t, err, status.CR4001)
	if n := len(f.recorded()); n != 0 {
		t.Fatalf("%d requests sent for invalid input", n)
	}
}

// answer makes the fake answer every request with status and body.
func answer(f *fakeRHSM, code int, body string) {
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
		return true
	})
}

// calls runs the three operations against c.
func calls(ctx context.Context, c *Client) map[string]error {
	_, enabledErr := c.Enabled(ctx, orgA)
	return map[string]error{
		"Register": c.Register(ctx, orgA, awsAcct, source),
		"Remove":   c.Remove(ctx, orgA, source),
		"Enabled":  enabledErr,
	}
}

func TestTransientStatuses(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	for _, code := range []int{500, 502, 503, 504, 429, 408} {
		answer(f, code, `{"error":{"code":`+fmt.Sprint(code)+`,"message":"try later"}}`)
		for op, err := range calls(t.Context(), c) {
			t.Run(fmt.Sprintf("%s/%d", op, code), func(t *testing.T) {
				wantTransient(t, err)
				if !strings.Contains(err.Error(), fmt.Sprint(code)) || !strings.Contains(err.Error(), "try later") {
					t.Fatalf("error %q lacks the status or excerpt", err)
				}
			})
		}
	}
}

func TestPermanentStatuses(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	// A real 400 from the API: the account id is not 12 digits.
	err := c.Register(ctx, orgA, "12345", source)
	wantPermanent(t, err, status.CR4000)
	if !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "12 digits") {
		t.Fatalf("error %q lacks the status or the body excerpt", err)
	}

	for _, code := range []int{400, 404, 405, 415, 422} {
		answer(f, code, `{"error":{"code":`+fmt.Sprint(code)+`,"message":"no"}}`)
		for op, err := range calls(ctx, c) {
			if op == "Remove" && code == http.StatusNotFound {
				if err != nil {
					t.Fatalf("Remove 404: %v", err)
				}
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", op, code), func(t *testing.T) {
				wantPermanent(t, err, status.CR4000)
				if !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", code)) {
					t.Fatalf("error %q lacks the status", err)
				}
			})
		}
	}
	// 409 is a conflict only for Register.
	answer(f, http.StatusConflict, `{}`)
	got := calls(ctx, c)
	if !errors.Is(got["Register"], failure.ErrConflict) {
		t.Fatalf("Register 409: %v", got["Register"])
	}
	wantPermanent(t, got["Remove"], status.CR4000)
	wantPermanent(t, got["Enabled"], status.CR4000)
}

func TestExcerptIsShortAndSafe(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	answer(f, http.StatusBadRequest, "line1\n\x00\x1b[31m"+strings.Repeat("é", 1000)+"\xff")
	err := c.Register(t.Context(), orgA, awsAcct, source)
	wantPermanent(t, err, status.CR4000)
	msg := err.Error()
	if len(msg) > 600 {
		t.Fatalf("error is %d bytes long: %q", len(msg), msg)
	}
	if strings.ContainsAny(msg, "\n\x00\x1b") || !utf8.ValidString(msg) {
		t.Fatalf("error holds control or invalid bytes: %q", msg)
	}
}

func TestTimeout(t *testing.T) {
	f := newFakeRHSM()
	release := make(chan struct{})
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
	c, _ := start(t, f, Config{Timeout: 100 * time.Millisecond})
	t.Cleanup(func() { close(release) }) // runs before the server closes
	for op, err := range calls(t.Context(), c) {
		t.Run(op, func(t *testing.T) {
			wantTransient(t, err)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("error %v is not a timeout", err)
			}
		})
	}
}

func TestCallerCancel(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for op, err := range calls(ctx, c) {
		t.Run(op, func(t *testing.T) {
			wantTransient(t, err)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v does not wrap context.Canceled", err)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := New(Config{BaseURL: "http://" + addr + "/management/v1"})
	if err != nil {
		t.Fatal(err)
	}
	for op, err := range calls(t.Context(), c) {
		t.Run(op, func(t *testing.T) { wantTransient(t, err) })
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	other := newFakeRHSM()
	otherSrv := httptest.NewServer(other)
	t.Cleanup(otherSrv.Close)

	f := newFakeRHSM()
	f.authHeader, f.authValue = "X-Rhsm-Key", "redirect-secret"
	f.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, otherSrv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		return true
	})
	c, _ := start(t, f, Config{AuthHeader: "X-Rhsm-Key", AuthValue: "redirect-secret"})
	for op, err := range calls(t.Context(), c) {
		t.Run(op, func(t *testing.T) {
			wantTransient(t, err)
			if !strings.Contains(err.Error(), "base URL") {
				t.Fatalf("redirect error %q does not point at the base URL setting", err)
			}
		})
	}
	if n := len(other.recorded()); n != 0 {
		t.Fatalf("redirect followed %d times", n)
	}
}

func TestEnabledAnswers(t *testing.T) {
	f := newFakeRHSM()
	c, _ := start(t, f, Config{})
	ctx := t.Context()

	answer(f, http.StatusOK, `{"body":[
		{"shortName":"GCE","accounts":[{"id":"gce-1","sourceId":"1"}]},
		{"shortName":"AWS","accounts":[{"id":"000000000001","nickname":"n","sourceId":"1","verified":true,"dateAdded":"2020-01-01"},
		                               {"id":"000000000002","sourceId":"2","verified":false}]}]}`)
	got, err := c.Enabled(ctx, orgA)
	if err != nil {
		t.Fatal(err)
	}
	want := []Account{
		{ID: "000000000001", Nickname: "n", SourceID: "1", Verified: true},
		{ID: "000000000002", SourceID: "2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Enabled %v, want %v", got, want)
	}
	req := f.recorded()[0]
	if req.Method != http.MethodGet || req.Path != "/management/v1/cloud_access_providers/enabled" || req.Header.Get(OrgHeader) != orgA {
		t.Fatalf("request %s %s org %q", req.Method, req.Path, req.Header.Get(OrgHeader))
	}

	for _, body := range []string{`{"body":[]}`, `{}`, `{"body":[{"shortName":"AWS","accounts":[]}]}`} {
		answer(f, http.StatusOK, body)
		got, err := c.Enabled(ctx, orgA)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("Enabled of %s = %#v, %v; want an empty list", body, got, err)
		}
	}
	answer(f, http.StatusOK, `<html>proxy error</html>`)
	_, err = c.Enabled(ctx, orgA)
	wantTransient(t, err)
}

func TestCredentials(t *testing.T) {
	const headerSecret = "hdr-s3cr3t-value"
	const tokenSecret = "tok-s3cr3t-value"
	secrets := []string{headerSecret, tokenSecret}
	noSecret := func(t *testing.T, s string) {
		t.Helper()
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Fatalf("%q holds a credential", s)
			}
		}
	}
	wantCredentialError := func(t *testing.T, err error) {
		t.Helper()
		wantTransient(t, err)
		if !strings.Contains(err.Error(), "credential") || !strings.Contains(err.Error(), "RHSM_") {
			t.Fatalf("error %q does not point at the RHSM_* credential settings", err)
		}
		noSecret(t, err.Error())
	}
	cases := []struct {
		name string
		fake func(*fakeRHSM)
		cfg  Config
	}{
		{"header", func(f *fakeRHSM) { f.authHeader, f.authValue = "X-Rhsm-Key", headerSecret },
			Config{AuthHeader: "x-rhsm-key", AuthValue: headerSecret}},
		{"bearer", func(f *fakeRHSM) { f.bearerToken = tokenSecret },
			Config{BearerToken: tokenSecret}},
		{"both", func(f *fakeRHSM) {
			f.authHeader, f.authValue, f.bearerToken = "X-Rhsm-Key", headerSecret, tokenSecret
		}, Config{AuthHeader: "X-Rhsm-Key", AuthValue: headerSecret, BearerToken: tokenSecret}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRHSM()
			tc.fake(f)
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			base := srv.URL + standin.DefaultPrefix
			ctx := t.Context()

			good := tc.cfg
			good.BaseURL = base
			c, err := New(good)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Register(ctx, orgA, awsAcct, source); err != nil {
				t.Fatalf("Register with the credential: %v", err)
			}
			if got, err := c.Enabled(ctx, orgA); err != nil || len(got) != 1 {
				t.Fatalf("Enabled with the credential: %v, %v", got, err)
			}
			if err := c.Remove(ctx, orgA, source); err != nil {
				t.Fatalf("Remove with the credential: %v", err)
			}

			// Without the credential: a transient credential error.
			bare, err := New(Config{BaseURL: base})
			if err != nil {
				t.Fatal(err)
			}
			for op, err := range calls(ctx, bare) {
				t.Run("without/"+op, func(t *testing.T) { wantCredentialError(t, err) })
			}

			// With a wrong one, echoed back by the server: still no secret in errors.
			wrong := good
			if wrong.AuthValue != "" {
				wrong.AuthValue = headerSecret + "-old"
			}
			if wrong.BearerToken != "" {
				wrong.BearerToken = tokenSecret + "-old"
			}
			echo := func(w http.ResponseWriter, r *http.Request) bool {
				if r.Header.Get("Authorization") == "Bearer "+tokenSecret || r.Header.Get("X-Rhsm-Key") == headerSecret {
					return false
				}
				fakeError(w, http.StatusForbidden, fmt.Sprintf("rejected key=%q authorization=%q",
					r.Header.Get("X-Rhsm-Key"), r.Header.Get("Authorization")))
				return true
			}
			f.setIntercept(echo)
			wc, err := New(wrong)
			if err != nil {
				t.Fatal(err)
			}
			for op, err := range calls(ctx, wc) {
				t.Run("wrong/"+op, func(t *testing.T) {
					wantCredentialError(t, err)
					if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "body withheld") {
						t.Fatalf("error %q: want HTTP 403 and the echo withheld", err)
					}
				})
			}
			noSecret(t, fmt.Sprintf("%v %+v %#v %s", good, good, good, good))
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	const secret = "n3w-s3cr3t"
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:1/management/v1"
	cases := map[string]Config{
		"no base URL":          {},
		"relative base URL":    {BaseURL: "/management/v1"},
		"ftp base URL":         {BaseURL: "ftp://host/x"},
		"credentials in URL":   {BaseURL: "https://user:" + secret + "@host/x"},
		"query in URL":         {BaseURL: base + "?a=b"},
		"header without value": {BaseURL: base, AuthHeader: "X-Key"},
		"value without header": {BaseURL: base, AuthValue: secret},
		"bad header name":      {BaseURL: base, AuthHeader: "X Key", AuthValue: secret},
		"authorization twice":  {BaseURL: base, AuthHeader: "authorization", AuthValue: secret, BearerToken: secret},
		"control in token":     {BaseURL: base, BearerToken: secret + "\n"},
		"negative timeout":     {BaseURL: base, Timeout: -time.Second},
		"cert without key":     {BaseURL: base, CertFile: garbage},
		"key without cert":     {BaseURL: base, KeyFile: garbage},
		"bad key pair":         {BaseURL: base, CertFile: garbage, KeyFile: garbage},
		"missing CA file":      {BaseURL: base, CAFile: filepath.Join(dir, "missing.pem")},
		"CA file without PEM":  {BaseURL: base, CAFile: garbage},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := New(cfg)
			if err == nil {
				t.Fatalf("New accepted %v: %v", cfg, c)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q holds the credential", err)
			}
		})
	}

	c, err := New(Config{BaseURL: "https://rhsm.example.com/management/v1/"})
	if err != nil {
		t.Fatal(err)
	}
	if c.base != "https://rhsm.example.com/management/v1" || c.http.Timeout != DefaultTimeout {
		t.Fatalf("base %q timeout %s", c.base, c.http.Timeout)
	}
}

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	caFile, certFile, keyFile string
	caPool                    *x509.CertPool
	server                    tls.Certificate
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cloudoreg test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	certPEM := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }

	srvDER, srvKey := issue(2, "rhsm test server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	server, err := tls.X509KeyPair(certPEM(srvDER), keyPEM(srvKey))
	if err != nil {
		t.Fatal(err)
	}
	cliDER, cliKey := issue(3, "cloudoreg", x509.ExtKeyUsageClientAuth, nil)

	p := pki{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "client.pem"),
		keyFile:  filepath.Join(dir, "client-key.pem"),
		caPool:   x509.NewCertPool(),
		server:   server,
	}
	p.caPool.AddCert(caCert)
	for file, data := range map[string][]byte{p.caFile: certPEM(caDER), p.certFile: certPEM(cliDER), p.keyFile: keyPEM(cliKey)} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestClientCertificate(t *testing.T) {
	p := newPKI(t)
	f := newFakeRHSM()
	var seen []string // client certificate subjects, guarded by f.mu
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			f.mu.Lock()
			seen = append(seen, r.TLS.PeerCertificates[0].Subject.CommonName)
			f.mu.Unlock()
		}
		f.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
		Certificates: []tls.Certificate{p.server},
		MinVersion:   tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	base := srv.URL + standin.DefaultPrefix
	ctx := t.Context()

	c, err := New(Config{BaseURL: base, CertFile: p.certFile, KeyFile: p.keyFile, CAFile: p.caFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx, orgA, awsAcct, source); err != nil {
		t.Fatalf("Register over mutual TLS: %v", err)
	}
	if got, err := c.Enabled(ctx, orgA); err != nil || len(got) != 1 {
		t.Fatalf("Enabled over mutual TLS: %v, %v", got, err)
	}
	f.mu.Lock()
	if len(seen) != 2 || seen[0] != "cloudoreg" {
		t.Fatalf("server saw client certificates %v", seen)
	}
	f.mu.Unlock()

	// Without a client certificate the handshake fails: transient.
	noCert, err := New(Config{BaseURL: base, CAFile: p.caFile})
	if err != nil {
		t.Fatal(err)
	}
	for op, err := range calls(ctx, noCert) {
		t.Run("no-cert/"+op, func(t *testing.T) { wantTransient(t, err) })
	}
	// Without the CA the server is not trusted: transient.
	noCA, err := New(Config{BaseURL: base, CertFile: p.certFile, KeyFile: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	for op, err := range calls(ctx, noCA) {
		t.Run("no-ca/"+op, func(t *testing.T) {
			wantTransient(t, err)
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Fatalf("error %v is not an unknown-authority error", err)
			}
		})
	}
	if n := len(f.registrations(orgA)); n != 1 {
		t.Fatalf("%d registrations, want 1", n)
	}
}

// A body is quoted as the server wrote it or not at all, whatever the
// credential: even a one-character token leaves the text of a body that does
// not contain it intact, and withholds one that does.
func TestExcerptIsVerbatimOrWithheld(t *testing.T) {
	for _, token := range []string{"e", "q", "tok-s3cr3t-value"} {
		c, err := New(Config{BaseURL: "https://rhsm.example/management/v1", BearerToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range []string{`{"error":{"message":"account already registered"}}`, "plain text answer", "quotes " + token} {
			got := c.excerpt([]byte(body))
			if strings.Contains(body, token) {
				if got != "body withheld: it quotes Cloudoreg's credential" {
					t.Errorf("token %q, body %q: excerpt %q, want it withheld", token, body, got)
				}
				continue
			}
			want := "body: " + body
			if strings.HasPrefix(body, "{") {
				want = "body: account already registered"
			}
			if got != want {
				t.Errorf("token %q, body %q: excerpt %q, want %q", token, body, got, want)
			}
		}
	}
}
