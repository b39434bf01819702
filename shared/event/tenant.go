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

// Key is the Kafka message key for the tenant, as Sources uses it: the org id,
// else the account number.
func (t Tenant) Key() string {
	if t.OrgID != "" {
		return t.OrgID
	}
	return t.AccountNumber
}

// ResolveTenant applies docs/contract.md, "Event stream": the tenant headers
// win; only when both are empty is the identity decoded. Empty header values
// count as absent.
func ResolveTenant(orgHeader, accountHeader, identityHeader string) (Tenant, error) {
	if orgHeader != "" || accountHeader != "" {
		return Tenant{OrgID: orgHeader, AccountNumber: accountHeader}, nil
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
	return t, nil
}
