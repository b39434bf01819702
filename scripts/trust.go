// Package scripts holds the data files of the local stack that its programs
// carry with them, so that they run from any directory.
package scripts

import _ "embed"

// STSTrust is sts-trust.json: the roles the STS stand-in trusts by default.
//
//go:embed sts-trust.json
var STSTrust []byte
