// Package rhsm is Cloudoreg's client of the RHSM Cloud Access API
// (docs/contract.md, "RHSM Cloud Access API"): it registers a customer's AWS
// account for cloud access, removes a source's registrations and lists an
// org's accounts.
//
// Failures are classified with package failure: 5xx, 429, 408, timeouts,
// connection errors, redirects and credential rejections (401/403, a
// configuration problem of Cloudoreg's) are transient; other 4xx are
// permanent with code CR4000. A 409 on registration is returned as an error
// wrapping failure.ErrConflict, unclassified: the caller tells, with Enabled, whether
// the account is already this org's or another org's.
//
// The credential (header value, bearer token, client key) never appears in an
// error: a response that quotes it is not excerpted, and requests never carry
// it in the URL.
package rhsm

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Target names RHSM in classified failures, logs and metric labels.
const Target = "rhsm"

// OrgHeader carries the org id a request acts for.
const OrgHeader = "X-RhsmApi-AccountID"

// DefaultTimeout bounds one request when Config.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// Provider is the cloud access provider short name of AWS.
const Provider = "AWS"

const (
	registerPath = "/cloud_access_providers/AWS/accounts"
	removePath   = "/cloud_access_providers/accounts"
	enabledPath  = "/cloud_access_providers/enabled"

	maxResponse = 4 << 20 // bytes of a response body read at most
	maxExcerpt  = 200     // bytes of a response body quoted in an error
)

// Config configures a Client. Credential fields are secrets: Config's String
// and GoString redact them.
type Config struct {
	// BaseURL of the API, including its base path, e.g.
	// https://api.access.redhat.com/management/v1.
	BaseURL string
	// AuthHeader and AuthValue, when both set, are sent as a header.
	AuthHeader string
	AuthValue  string
	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	// CertFile and KeyFile (PEM), when set, are the client TLS certificate;
	// CAFile (PEM), when set, holds the root CAs trusted for the server.
	CertFile string
	KeyFile  string
	CAFile   string
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
}

// String describes c without its secrets.
func (c Config) String() string {
	redact := func(s string) string {
		if s == "" {
			return `""`
		}
		return "[REDACTED]"
	}
	return fmt.Sprintf("rhsm.Config{BaseURL:%q AuthHeader:%q AuthValue:%s BearerToken:%s CertFile:%q KeyFile:%q CAFile:%q Timeout:%s}",
		c.BaseURL, c.AuthHeader, redact(c.AuthValue), redact(c.BearerToken), c.CertFile, c.KeyFile, c.CAFile, c.Timeout)
}

// GoString is String, so that %#v does not print the secrets either.
func (c Config) GoString() string { return c.String() }

// Account is one AWS account registered for cloud access.
type Account struct {
	ID       string `json:"id"`
	Nickname string `json:"nickname"`
	SourceID string `json:"sourceId"`
	Verified bool   `json:"verified"`
}

// Client calls the RHSM Cloud Access API. It is safe for concurrent use.
type Client struct {
	base       string
	http       *http.Client
	authHeader string
	authValue  string
	bearer     string
	secrets    []string // credential values: a body quoting one is never quoted
}

// New checks cfg and builds a Client. Its errors name the offending setting
// but never a credential value.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.BaseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("rhsm: BaseURL must be an absolute http(s) URL")
	}
	if u.User != nil {
		return nil, errors.New("rhsm: BaseURL must not carry credentials; use the auth header, bearer token or client certificate settings")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("rhsm: BaseURL must not have a query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""

	if (cfg.AuthHeader == "") != (cfg.AuthValue == "") {
		return nil, errors.New("rhsm: AuthHeader and AuthValue must be set together")
	}
	if cfg.AuthHeader != "" && !validHeaderName(cfg.AuthHeader) {
		return nil, fmt.Errorf("rhsm: AuthHeader %q is not a valid header name", cfg.AuthHeader)
	}
	if cfg.AuthHeader != "" && cfg.BearerToken != "" && http.CanonicalHeaderKey(cfg.AuthHeader) == "Authorization" {
		return nil, errors.New("rhsm: AuthHeader is Authorization and BearerToken is set; use one of them")
	}
	for name, v := range map[string]string{"AuthValue": cfg.AuthValue, "BearerToken": cfg.BearerToken} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("rhsm: %s contains control characters", name)
		}
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("rhsm: Timeout must not be negative")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("rhsm: CertFile and KeyFile must be set together")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			// The error of LoadX509KeyPair names files and PEM problems,
			// never key material.
			return nil, fmt.Errorf("rhsm: loading client certificate: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("rhsm: reading CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("rhsm: CAFile %q holds no PEM certificate", cfg.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig

	c := &Client{
		base: u.String(),
		http: &http.Client{
			Transport: transport,
			Timeout:   timeout,
			// Never follow a redirect: a custom auth header would follow it
			// to another host. A redirect is reported as a misconfiguration.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		authHeader: cfg.AuthHeader,
		authValue:  cfg.AuthValue,
		bearer:     cfg.BearerToken,
	}
	for _, s := range []string{cfg.AuthValue, cfg.BearerToken} {
		if s != "" {
			c.secrets = append(c.secrets, s)
		}
	}
	return c, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !tokenChar(r) {
			return false
		}
	}
	return true
}

// checkOrg refuses an org id RHSM cannot be asked about.
func checkOrg(orgID string) error {
	if strings.TrimSpace(orgID) == "" {
		return failure.Permanent(status.CR4001, Target, errors.New("no org id to register the AWS account under"))
	}
	if strings.ContainsFunc(orgID, unicode.IsControl) {
		return failure.Permanent(status.CR4000, Target, fmt.Errorf("org id %q is not a valid header value", orgID))
	}
	return nil
}

// Register registers awsAccountID for cloud access under orgID, tagged with
// sourceID. nil on success; an error wrapping failure.ErrConflict when RHSM answers
// 409 (already registered by this org or another one: the caller decides with
// Enabled); otherwise a failure.Error. An empty orgID is a permanent CR4001.
func (c *Client) Register(ctx context.Context, orgID, awsAccountID, sourceID string) error {
	if err := checkOrg(orgID); err != nil {
		return err
	}
	body, err := json.Marshal([]Account{{ID: awsAccountID, Nickname: "", Verified: true, SourceID: sourceID}})
	if err != nil {
		return failure.Permanent(status.CR4000, Target, fmt.Errorf("encoding registration: %w", err))
	}
	op := "register AWS account " + awsAccountID + " of source " + sourceID
	code, resp, err := c.do(ctx, http.MethodPost, registerPath, nil, orgID, body)
	if err != nil {
		return failure.Transient(Target, fmt.Errorf("%s: %w", op, err))
	}
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusConflict:
		return fmt.Errorf("rhsm: AWS account already registered: %w: %s for org %s: %s", failure.ErrConflict, op, orgID, c.excerpt(resp))
	}
	return c.classify(op, code, resp)
}

// Remove removes orgID's registrations of sourceID. nil on success and when
// there was nothing to remove (404); otherwise a failure.Error. An empty
// sourceID is refused (permanent CR4000) without calling RHSM.
func (c *Client) Remove(ctx context.Context, orgID, sourceID string) error {
	if err := checkOrg(orgID); err != nil {
		return err
	}
	if strings.TrimSpace(sourceID) == "" {
		return failure.Permanent(status.CR4000, Target, errors.New("remove: empty source id"))
	}
	op := "remove registrations of source " + sourceID
	code, resp, err := c.do(ctx, http.MethodDelete, removePath, url.Values{"sourceID": {sourceID}}, orgID, nil)
	if err != nil {
		return failure.Transient(Target, fmt.Errorf("%s: %w", op, err))
	}
	if code >= 200 && code < 300 || code == http.StatusNotFound {
		return nil
	}
	return c.classify(op, code, resp)
}

// enabledResponse is the body of the enabled endpoint.
type enabledResponse struct {
	Body []struct {
		ShortName string    `json:"shortName"`
		Accounts  []Account `json:"accounts"`
	} `json:"body"`
}

// Enabled lists orgID's AWS accounts registered for cloud access (other
// providers are left out). An org with none gives an empty list.
func (c *Client) Enabled(ctx context.Context, orgID string) ([]Account, error) {
	if err := checkOrg(orgID); err != nil {
		return nil, err
	}
	op := "list enabled accounts"
	code, resp, err := c.do(ctx, http.MethodGet, enabledPath, nil, orgID, nil)
	if err != nil {
		return nil, failure.Transient(Target, fmt.Errorf("%s: %w", op, err))
	}
	if code != http.StatusOK {
		return nil, c.classify(op, code, resp)
	}
	var er enabledResponse
	if err := json.Unmarshal(resp, &er); err != nil {
		// A garbled answer is most likely a proxy's error page: retry.
		return nil, failure.Transient(Target, fmt.Errorf("%s: undecodable answer: %s", op, c.excerpt(resp)))
	}
	accts := []Account{}
	for _, p := range er.Body {
		if strings.EqualFold(p.ShortName, Provider) {
			accts = append(accts, p.Accounts...)
		}
	}
	return accts, nil
}

// Registered reports whether orgID holds awsAccountID registered for
// sourceID, per Enabled. It is how a caller tells, after a 409 from Register,
// its own earlier registration from another org's (or another source's).
func (c *Client) Registered(ctx context.Context, orgID, awsAccountID, sourceID string) (bool, error) {
	accts, err := c.Enabled(ctx, orgID)
	if err != nil {
		return false, err
	}
	for _, a := range accts {
		if a.ID == awsAccountID && a.SourceID == sourceID {
			return true, nil
		}
	}
	return false, nil
}

// do sends one request and reads (at most maxResponse bytes of) the answer.
// A returned error is a transport failure (connection, timeout, cancel).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, orgID string, body []byte) (int, []byte, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(OrgHeader, orgID)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.authHeader != "" {
		req.Header.Set(c.authHeader, c.authValue)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, nil, fmt.Errorf("reading HTTP %d answer: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, b, nil
}

// classify turns an unexpected HTTP answer into a failure.Error.
func (c *Client) classify(op string, code int, body []byte) error {
	desc := fmt.Sprintf("%s: HTTP %d %s", op, code, http.StatusText(code))
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return failure.Transient(Target, fmt.Errorf(
			"%s: RHSM rejected Cloudoreg's credential; check the RHSM_* settings (auth header, bearer token, client certificate): %s",
			desc, c.excerpt(body)))
	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		return failure.Transient(Target, fmt.Errorf("%s: %s", desc, c.excerpt(body)))
	case code >= 300 && code < 400:
		return failure.Transient(Target, fmt.Errorf("%s: unexpected redirect; check the RHSM base URL setting", desc))
	case code >= 400:
		return failure.Permanent(status.CR4000, Target, fmt.Errorf("%s: %s", desc, c.excerpt(body)))
	}
	return failure.Transient(Target, fmt.Errorf("%s: unexpected answer: %s", desc, c.excerpt(body)))
}

// excerpt is a short, printable extract of a response body (its error
// message when it is a JSON error). A body that quotes a credential value is
// withheld whole: cutting the value out of it would leave the rest mangled
// (a short value matches inside any word) and still hint at the value.
func (c *Client) excerpt(body []byte) string {
	for _, secret := range c.secrets {
		if bytes.Contains(body, []byte(secret)) {
			return "body withheld: it quotes Cloudoreg's credential"
		}
	}
	s := string(body)
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if m := cmp.Or(e.Error.Message, e.Message); m != "" {
			s = m
		}
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == '\uFFFD'
	}), " ")
	if s == "" {
		return "empty body"
	}
	if len(s) > maxExcerpt {
		cut := maxExcerpt
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return "body: " + s
}

// tokenChar reports whether r may appear in an HTTP header name (RFC 9110
// token characters).
func tokenChar(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
