// Package sources is a client of the Sources REST API (docs/contract.md,
// "Sources REST API"): the few reads Cloudoreg needs, with every failure
// classified as gone, misconfigured, transient or permanent.
package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
)

// CloudMeterTypeName is the application type Cloudoreg serves.
const CloudMeterTypeName = "/insights/platform/cloud-meter"

// Paths of the two API bases.
const (
	PublicBase   = "/api/sources/v3.1"
	InternalBase = "/internal/v2.0"
)

// Failures a caller acts on differently.
var (
	// ErrNotFound: the resource is gone; not an error to retry.
	ErrNotFound = errors.New("sources: not found")
	// ErrUnauthorized: a wrong PSK or missing tenant, a configuration error
	// of Cloudoreg's own. It is worth retrying (an operator fixes the
	// Secret) but never the customer's problem.
	ErrUnauthorized = errors.New("sources: unauthorized (check SOURCES_PSK and the tenant headers)")
	// ErrInvalid: Sources refused the request (400, 431 and any other
	// unexpected 4xx), answered something undecodable, or the request could
	// not even be built (a header value Go refuses). Asking again gets the
	// same answer, so it is never retried.
	ErrInvalid = errors.New("sources: request refused or answer unusable")
)

// TransientError is a failure worth retrying (5xx, 429, timeouts, network).
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return "sources: transient: " + e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err is worth retrying: 5xx, 429, timeouts,
// network errors, and ErrUnauthorized (a configuration an operator fixes).
func IsTransient(err error) bool {
	var te *TransientError
	return errors.As(err, &te) || errors.Is(err, ErrUnauthorized)
}

// Application is the part of a Sources application Cloudoreg reads.
type Application struct {
	ID                string  `json:"id"`
	SourceID          string  `json:"source_id"`
	ApplicationTypeID string  `json:"application_type_id"`
	PausedAt          *string `json:"paused_at"`
}

// Paused reports whether the customer paused the application.
func (a Application) Paused() bool { return a.PausedAt != nil && *a.PausedAt != "" }

// Authentication is a Sources authentication; Password is only filled by the
// internal read and is a secret, like Extra.ExternalID.
type Authentication struct {
	ID           string `json:"id"`
	AuthType     string `json:"authtype"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id"`
	Extra        struct {
		ExternalID string `json:"external_id"`
	} `json:"extra"`
}

// Client reads Sources. It is safe for concurrent use.
type Client struct {
	base string
	psk  string
	http *http.Client

	mu     sync.Mutex
	typeID string // cached id of the cloud-meter application type
}

// New returns a client of the Sources service at baseURL.
func New(baseURL, psk string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), psk: psk, http: &http.Client{Timeout: timeout}}
}

// Application reads one application.
func (c *Client) Application(ctx context.Context, t event.Tenant, id string) (Application, error) {
	var a Application
	err := c.get(ctx, t, PublicBase+"/applications/"+url.PathEscape(id), nil, &a)
	return a, err
}

// SourceApplications lists the applications of a source.
func (c *Client) SourceApplications(ctx context.Context, t event.Tenant, sourceID string) ([]Application, error) {
	var page struct{ Data []Application }
	err := c.get(ctx, t, PublicBase+"/sources/"+url.PathEscape(sourceID)+"/applications", url.Values{"limit": {"1000"}}, &page)
	return page.Data, err
}

// ApplicationAuthentications lists the authentications of an application (no secrets).
func (c *Client) ApplicationAuthentications(ctx context.Context, t event.Tenant, appID string) ([]Authentication, error) {
	var page struct{ Data []Authentication }
	err := c.get(ctx, t, PublicBase+"/applications/"+url.PathEscape(appID)+"/authentications", url.Values{"limit": {"1000"}}, &page)
	return page.Data, err
}

// AuthenticationWithSecret reads an authentication with its password, from
// the internal API (needs the PSK).
func (c *Client) AuthenticationWithSecret(ctx context.Context, t event.Tenant, id string) (Authentication, error) {
	var a Authentication
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
	q := url.Values{"filter[name]": {CloudMeterTypeName}}
	if err := c.get(ctx, t, PublicBase+"/application_types", q, &page); err != nil {
		return "", err
	}
	if len(page.Data) == 0 || page.Data[0].ID == "" {
		return "", fmt.Errorf("sources: no application type named %s", CloudMeterTypeName)
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
		return fmt.Errorf("GET %s: %w: %w", path, ErrInvalid, err)
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
		return &TransientError{Err: fmt.Errorf("GET %s: reading body: %w", path, err)}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("GET %s: %w: undecodable response: %w", path, ErrInvalid, err)
		}
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("GET %s: %w", path, ErrNotFound)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("GET %s: HTTP %d: %w", path, resp.StatusCode, ErrUnauthorized)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return &TransientError{Err: fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)}
	default:
		return fmt.Errorf("GET %s: %w: HTTP %d: %s", path, ErrInvalid, resp.StatusCode, excerpt(body))
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
		return &TransientError{Err: err}
	default:
		return fmt.Errorf("GET %s: %w: %w", path, ErrInvalid, err)
	}
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
