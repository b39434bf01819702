// Package arn parses the IAM role ARNs customers give (docs/contract.md,
// "AWS STS verification"): a value of the domain, free of the AWS SDK.
package arn

import (
	"errors"
	"regexp"
	"strings"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Role is a parsed IAM role ARN,
// arn:<Partition>:iam::<AccountID>:role<Path><Name>.
type Role struct {
	// Raw is the ARN as given, without surrounding whitespace.
	Raw string
	// Partition is aws, aws-us-gov or aws-cn.
	Partition string
	// AccountID is the 12-digit AWS account id, kept as a string: leading
	// zeros matter.
	AccountID string
	// Path is the role's IAM path, "/" when it has none, else "/a/b/".
	Path string
	// Name is the role name.
	Name string
}

// String is the ARN.
func (r Role) String() string { return r.Raw }

// Partitions are the AWS partitions a role may live in.
var partitions = map[string]bool{"aws": true, "aws-us-gov": true, "aws-cn": true}

// Limits and patterns of IAM (CreateRole: RoleName, Path).
const (
	maxARNLen  = 2048
	maxPathLen = 512
)

var (
	accountRE = regexp.MustCompile(`^[0-9]{12}$`)
	nameRE    = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	segmentRE = regexp.MustCompile(`^[\w+=,.@-]+$`)
)

// ParseRole parses an IAM role ARN pasted by a customer. Surrounding
// whitespace is ignored. An invalid ARN is a permanent CG1004 failure whose
// message says what is wrong but never repeats the input: customers paste
// all sorts of things into the ARN field, secrets included.
func ParseRole(s string) (Role, error) {
	raw := strings.TrimSpace(s)
	switch {
	case raw == "":
		return invalidARN("it is empty")
	case len(raw) > maxARNLen:
		return invalidARN("it is longer than 2048 characters")
	}
	parts := strings.Split(raw, ":")
	if len(parts) != 6 {
		return invalidARN("it is not of the form arn:<partition>:iam::<account id>:role/<name>")
	}
	if parts[0] != "arn" {
		return invalidARN(`it does not start with "arn:"`)
	}
	if !partitions[parts[1]] {
		return invalidARN("the partition is not aws, aws-us-gov or aws-cn")
	}
	if parts[2] != "iam" {
		return invalidARN("it is not an IAM ARN")
	}
	if parts[3] != "" {
		return invalidARN("an IAM ARN has no region")
	}
	if !accountRE.MatchString(parts[4]) {
		return invalidARN("the account id is not 12 digits")
	}
	res, ok := strings.CutPrefix(parts[5], "role/")
	if !ok {
		return invalidARN("it is not a role ARN")
	}
	segs := strings.Split(res, "/")
	name := segs[len(segs)-1]
	if !nameRE.MatchString(name) {
		return invalidARN("the role name is not 1 to 64 characters of letters, digits and +=,.@_-")
	}
	path := "/"
	if dirs := segs[:len(segs)-1]; len(dirs) > 0 {
		for _, d := range dirs {
			if !segmentRE.MatchString(d) {
				return invalidARN("the role path has an empty or invalid segment")
			}
		}
		path = "/" + strings.Join(dirs, "/") + "/"
	}
	if len(path) > maxPathLen {
		return invalidARN("the role path is longer than 512 characters")
	}
	return Role{Raw: raw, Partition: parts[1], AccountID: parts[4], Path: path, Name: name}, nil
}

func invalidARN(reason string) (Role, error) {
	return Role{}, failure.Permanent(status.CG1004, "arn", errors.New("invalid role ARN: "+reason))
}
