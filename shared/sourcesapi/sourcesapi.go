// Package sourcesapi is a client of the Sources REST API (docs/contract.md,
// "Sources REST API"): the few reads Cloudoreg needs, with every failure
// classified in package failure's terms: gone (failure.ErrNotFound),
// Cloudoreg's PSK refused (an operator failure, retried), transient (5xx,
// 429, timeouts, network) or refused for good (dead-lettered, never
// retried).
package sourcesapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
)

// Paths of the two API bases.
const (
	PublicBase   = "/api/sources/v3.1"
	InternalBase = "/internal/v2.0"
)

// target names Sources in classified failures.
const target = "sources"

// Client reads Sources. It is safe for concurrent use.
type Client struct {
	base string
	psk  string
	http *http.Client

	mu     sync.Mutex
	typeID string // cached id of the cloud-meter application type
}

// New returns a client of the Sources service at baseURL. caFile, when
// set, is a PEM bundle trusted besides the system roots (an https baseURL
// whose certificate the cluster's service CA signed).
func New(baseURL, psk string, timeout time.Duration, caFile string) (*Client, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(caFile) //nolint:gosec // G304: the operator names the CA file
		if err != nil {
			return nil, fmt.Errorf("SOURCES_CA_FILE: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SOURCES_CA_FILE %s: no PEM certificate in it", caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), psk: psk, http: &http.Client{Timeout: timeout, Transport: transport}}, nil
}

// Application reads one application.
func (c *Client) Application(ctx context.Context, t event.Tenant, id string) (sources.Application, error) {
	var a sources.Application
	err := c.get(ctx, t, PublicBase+"/applications/"+url.PathEscape(id), nil, &a)
	return a, err
}

// SourceApplications lists the applications of a source.
func (c *Client) SourceApplications(ctx context.Context, t event.Tenant, sourceID string) ([]sources.Application, error) {
	var page struct{ Data []sources.Application }
	err := c.get(ctx, t, PublicBase+"/sources/"+url.PathEscape(sourceID)+"/applications", url.Values{"limit": {"1000"}}, &page)
	return page.Data, err
}

// ApplicationAuthentications lists the authentications of an application (no secrets).
func (c *Client) ApplicationAuthentications(ctx context.Context, t event.Tenant, appID string) ([]sources.Authentication, error) {
	var page struct{ Data []sources.Authentication }
	err := c.get(ctx, t, PublicBase+"/applications/"+url.PathEscape(appID)+"/authentications", url.Values{"limit": {"1000"}}, &page)
	return page.Data, err
}

// Links lists the links whose column by holds id. Only the link table says
// whether a credential is attached: an application's authentication list
// is built from each authentication's own resource fields and still shows
// one whose link was deleted.
func (c *Client) Links(ctx context.Context, t event.Tenant, by sources.LinkFilter, id string) ([]sources.Link, error) {
	var page struct{ Data []sources.Link }
	q := url.Values{"filter[" + string(by) + "]": {id}, "limit": {"1000"}}
	if err := c.get(ctx, t, PublicBase+"/application_authentications", q, &page); err != nil {
		return nil, err
	}
	// A Sources that ignored the filter would answer every link of the
	// tenant; attachment must not be decided from someone else's row.
	var out []sources.Link
	for _, l := range page.Data {
		if (by == sources.LinksOfApplication && l.ApplicationID == id) || (by == sources.LinksOfAuthentication && l.AuthenticationID == id) {
			out = append(out, l)
		}
	}
	return out, nil
}

// AuthenticationWithSecret reads an authentication with its password, from
// the internal API (needs the PSK).
func (c *Client) AuthenticationWithSecret(ctx context.Context, t event.Tenant, id string) (sources.Authentication, error) {
	var a sources.Authentication
	q := url.Values{"expose_encrypted_attribute[]": {"password"}}
	err := c.get(ctx, t, InternalBase+"/authentications/"+url.PathEscape(id), q, &a)
	return a, err
}

// CachedCloudMeterTypeID is the cloud-meter application type id if an
// earlier CloudMeterTypeID call found it: answered without a call.
func (c *Client) CachedCloudMeterTypeID() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.typeID, c.typeID != ""
}

// CloudMeterTypeID is the id of the cloud-meter application type. Ids differ
// per installation, so it is looked up by name and cached.
func (c *Client) CloudMeterTypeID(ctx context.Context, t event.Tenant) (string, error) {
	if id, ok := c.CachedCloudMeterTypeID(); ok {
		return id, nil
	}
	var page struct{ Data []struct{ ID string } }
	q := url.Values{"filter[name]": {sources.CloudMeterTypeName}}
	if err := c.get(ctx, t, PublicBase+"/application_types", q, &page); err != nil {
		return "", err
	}
	if len(page.Data) == 0 || page.Data[0].ID == "" {
		// This Sources installation does not serve cloud-meter: asking
		// again answers the same, so the work is dead-lettered.
		return "", refused(PublicBase+"/application_types", fmt.Errorf("no application type named %s", sources.CloudMeterTypeName))
	}
	c.mu.Lock()
	c.typeID = page.Data[0].ID
	c.mu.Unlock()
	return page.Data[0].ID, nil
}

func (c *Client) get(ctx context.Context, t event.Tenant, path string, q url.Values, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return refused(path, err)
	}
	if t.OrgID != "" {
		req.Header.Set(event.HeaderOrgID, t.OrgID)
	}
	if t.AccountNumber != "" {
		req.Header.Set(event.HeaderAccount, t.AccountNumber)
	}
	req.Header.Set(event.HeaderPSK, c.psk)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return transportFailure(path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return failure.Transient(target, fmt.Errorf("GET %s: reading body: %w", path, err))
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(body, out); err != nil {
			return refused(path, fmt.Errorf("undecodable response: %w", err))
		}
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("GET %s: %w", path, failure.ErrNotFound)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return failure.Operator(failure.ReasonSourcesUnauthorized, target, fmt.Errorf("GET %s: HTTP %d: Sources refused Cloudoreg (check SOURCES_PSK and the tenant headers)", path, resp.StatusCode))
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return failure.Transient(target, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode))
	default:
		return refused(path, fmt.Errorf("HTTP %d: %s", resp.StatusCode, excerpt(body)))
	}
}

// transportFailure classifies an error of http.Client.Do. Timeouts,
// refused connections, resets and cancellations are worth retrying; an
// error Go raises before anything is sent (a header value with a control
// character, a malformed URL) is the same on every attempt. No secret is in
// the error: the URL holds none and the PSK travels in a header.
func transportFailure(path string, err error) error {
	cause := err
	var urlErr *url.Error // every error of Do is one, and it claims to be a net.Error
	if errors.As(err, &urlErr) {
		cause = urlErr.Err
	}
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(cause, &netErr), errors.As(cause, &opErr),
		errors.Is(cause, context.DeadlineExceeded), errors.Is(cause, context.Canceled),
		errors.Is(cause, io.EOF), errors.Is(cause, io.ErrUnexpectedEOF), errors.Is(cause, syscall.ECONNRESET):
		return failure.Transient(target, err)
	default:
		return refused(path, err)
	}
}

// refused is an answer (or a request) that asking again cannot change: 400,
// 431 and any other unexpected 4xx, an undecodable body, a request Go will
// not send. It is dead-lettered, never retried, never the customer's.
func refused(path string, err error) error {
	return failure.DeadLetter(failure.ReasonSourcesRefused, target, fmt.Errorf("GET %s: %w", path, err))
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
