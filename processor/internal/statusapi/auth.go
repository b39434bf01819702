package statusapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/redhatinsights/platform-go-middlewares/v2/identity"

	"github.com/cloudoreg/cloudoreg/shared/event"
)

// access is what a route requires.
type access int

const (
	anyCaller access = iota // an org (its own sources) or an operator
	adminOnly               // an operator with the admin token
)

// caller is who asks: an operator (admin) or an org.
type caller struct {
	admin bool
	org   string
}

// who names the caller in the access log (never a credential).
func (c caller) who() string {
	switch {
	case c.admin:
		return "admin"
	case c.org != "":
		return "org:" + c.org
	default:
		return "anonymous"
	}
}

// sees reports whether the caller may see a source of org.
func (c caller) sees(org string) bool { return c.admin || (org != "" && c.org == org) }

// authorize decides who the caller is and whether the route admits them:
// code is 200 when it does. A bearer token is the admin token or nothing
// (it never falls back to the identity); x-rh-identity names an org.
func authorize(r *http.Request, adminToken string, need access) (caller, int, string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || !tokenMatches(token, adminToken) {
			return caller{}, http.StatusUnauthorized, "the bearer token is not the admin token (or admin access is off)"
		}
		return caller{admin: true}, http.StatusOK, ""
	}
	raw := r.Header.Get(event.HeaderIdentity)
	if raw == "" {
		return caller{}, http.StatusUnauthorized, "send x-rh-identity, or the admin token as Authorization: Bearer"
	}
	id, err := identity.DecodeIdentity(raw)
	if err != nil || id.Identity.OrgID == "" {
		return caller{}, http.StatusUnauthorized, "x-rh-identity is not an identity with an org id"
	}
	c := caller{org: id.Identity.OrgID}
	if need == adminOnly {
		return c, http.StatusForbidden, "this route needs the admin token"
	}
	return c, http.StatusOK, ""
}

// tokenMatches compares in constant time (of the hashes, so the length of
// the token leaks nothing either). An empty admin token matches nothing.
func tokenMatches(given, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
