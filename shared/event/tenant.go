package event

import (
	"errors"

	"github.com/redhatinsights/platform-go-middlewares/v2/identity"
)

// Tenant identifies the customer an event belongs to.
type Tenant struct {
	OrgID         string
	AccountNumber string
}

// ErrNoTenant means neither the tenant headers nor the identity name a tenant.
var ErrNoTenant = errors.New("no org id and no account number in the headers or the identity")

// ErrBadIdentity means the x-rh-identity header could not be decoded. The
// header's content is never part of an error: it is a credential.
var ErrBadIdentity = errors.New("x-rh-identity is not base64 JSON of an identity")

// ErrBadTenant means an org id or account number holds something no tenant
// of Sources can hold (see ValidTenantValue).
var ErrBadTenant = errors.New("org id or account number is not a tenant value")

// ErrIdentityTooLarge means x-rh-identity is longer than MaxIdentityBytes.
var ErrIdentityTooLarge = errors.New("x-rh-identity is too large")

// MaxTenantValue bounds an org id or an account number. Both are short
// decimal numbers in practice (7 to 10 digits); the bound only keeps a bad
// value from growing headers, logs and keys.
const MaxTenantValue = 64

// MaxIdentityBytes bounds the x-rh-identity Cloudoreg copies onto work and
// status messages. Real identities are a few KB (base64 of the identity and
// the entitlements); JetStream refuses a message whose headers exceed 64 KiB,
// and HTTP front ends refuse much less, so a larger one is poison.
const MaxIdentityBytes = 32 << 10

// ValidTenantValue reports whether s can be an org id or account number.
// Sources keeps a tenant as the header text it was given, and HTTP (Go's
// client and server alike) refuses control characters in header values, so
// a value with one could never be looked up: every call about it fails the
// same way. Cloudoreg accepts printable ASCII without spaces, up to
// MaxTenantValue characters; the empty value means absent.
func ValidTenantValue(s string) bool {
	if len(s) > MaxTenantValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// checkIdentity bounds the raw identity without decoding it: it is copied
// onward even when the tenant headers make decoding unnecessary. Base64 is
// printable ASCII, so anything else cannot be one.
func checkIdentity(s string) error {
	if len(s) > MaxIdentityBytes {
		return ErrIdentityTooLarge
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return ErrBadIdentity
		}
	}
	return nil
}

// Key is the Kafka message key for the tenant, as Sources uses it: the org id,
// else the account number.
func (t Tenant) Key() string {
	if t.OrgID != "" {
		return t.OrgID
	}
	return t.AccountNumber
}

// ResolveTenant applies docs/contract.md, "Event stream": the tenant headers win; only when
// both are empty is the identity decoded. Empty header values count as
// absent. The identity is bounded and checked for stray bytes in any case
// (ErrIdentityTooLarge, ErrBadIdentity), and every tenant value must pass
// ValidTenantValue (ErrBadTenant).
func ResolveTenant(orgHeader, accountHeader, identityHeader string) (Tenant, error) {
	if err := checkIdentity(identityHeader); err != nil {
		return Tenant{}, err
	}
	if orgHeader != "" || accountHeader != "" {
		return validTenant(Tenant{OrgID: orgHeader, AccountNumber: accountHeader})
	}
	if identityHeader == "" {
		return Tenant{}, ErrNoTenant
	}
	id, err := identity.DecodeIdentity(identityHeader)
	if err != nil {
		return Tenant{}, ErrBadIdentity
	}
	// DecodeIdentity already falls back to identity.internal.org_id.
	t := Tenant{OrgID: id.Identity.OrgID, AccountNumber: id.Identity.AccountNumber}
	if t.OrgID == "" && t.AccountNumber == "" {
		return Tenant{}, ErrNoTenant
	}
	return validTenant(t)
}

func validTenant(t Tenant) (Tenant, error) {
	if !ValidTenantValue(t.OrgID) || !ValidTenantValue(t.AccountNumber) {
		return Tenant{}, ErrBadTenant
	}
	return t, nil
}
