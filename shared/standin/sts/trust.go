package sts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Permission says whether the stand-in lets an action through for a role.
type Permission string

// The two permissions. An omitted permission in a trust file means Allow.
const (
	Allow Permission = "allow"
	Deny  Permission = "deny"
)

// Role is one entry of the trust table.
type Role struct {
	// ARN is the role ARN exactly as callers send it in RoleArn.
	ARN string `json:"arn"`
	// ExternalID, when set, must be sent verbatim as ExternalId.
	ExternalID string `json:"external_id,omitempty"`
	// AssumeRole decides AssumeRole calls for the role ("" means allow).
	AssumeRole Permission `json:"assume_role,omitempty"`
	// GetCallerIdentity decides GetCallerIdentity calls made with the
	// role's temporary credentials ("" means allow).
	GetCallerIdentity Permission `json:"get_caller_identity,omitempty"`
	// Comment documents the entry; the stand-in ignores it.
	Comment string `json:"comment,omitempty"`
}

// Trust is the trust table: which roles exist and what they allow. Roles
// absent from the table are denied.
type Trust struct {
	// Comment documents the table; the stand-in ignores it.
	Comment string `json:"comment,omitempty"`
	Roles   []Role `json:"roles"`
}

// LoadTrust reads and validates a trust table from a JSON file.
func LoadTrust(path string) (Trust, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the stack is told which table to read
	if err != nil {
		return Trust{}, fmt.Errorf("sts trust: %w", err)
	}
	t, err := decodeTrust(bytes.NewReader(data))
	if err != nil {
		return Trust{}, fmt.Errorf("sts trust %s: %w", path, err)
	}
	return t, nil
}

// decodeTrust decodes and validates a JSON trust table; unknown fields are
// errors so that a typo cannot silently turn into "allow".
func decodeTrust(r io.Reader) (Trust, error) {
	var t Trust
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Trust{}, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return Trust{}, errors.New("decode: trailing data after the table")
	}
	return t, t.Validate()
}

// Validate checks that every role has a well-formed, unique ARN and valid
// permissions.
func (t Trust) Validate() error {
	seen := map[string]bool{}
	for i, r := range t.Roles {
		if _, err := parseRoleARN(r.ARN); err != nil {
			return fmt.Errorf("roles[%d]: %w", i, err)
		}
		if seen[r.ARN] {
			return fmt.Errorf("roles[%d]: duplicate arn %s", i, r.ARN)
		}
		seen[r.ARN] = true
		for name, p := range map[string]Permission{"assume_role": r.AssumeRole, "get_caller_identity": r.GetCallerIdentity} {
			if p != "" && p != Allow && p != Deny {
				return fmt.Errorf("roles[%d]: %s must be %q or %q, not %q", i, name, Allow, Deny, p)
			}
		}
	}
	return nil
}

// allows reports whether p lets the action through ("" means allow).
func (p Permission) allows() bool { return p != Deny }

// roleARN is the part of a role ARN the stand-in needs to build identities.
type roleARN struct {
	partition, account, name string
}

// parseRoleARN accepts arn:<partition>:iam::<12 digits>:role/<path/>name.
// It is deliberately less strict than the processor's parser: the stand-in
// plays AWS, which answers ValidationError for garbage and AccessDenied for
// well-formed but unknown roles.
func parseRoleARN(s string) (roleARN, error) {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[2] != "iam" || parts[3] != "" {
		return roleARN{}, fmt.Errorf("%q is not an IAM role ARN", s)
	}
	if len(parts[4]) != 12 || strings.Trim(parts[4], "0123456789") != "" {
		return roleARN{}, fmt.Errorf("%q has no 12-digit account id", s)
	}
	res, ok := strings.CutPrefix(parts[5], "role/")
	name := res[strings.LastIndex(res, "/")+1:]
	if !ok || name == "" {
		return roleARN{}, fmt.Errorf("%q has no role name", s)
	}
	return roleARN{partition: parts[1], account: parts[4], name: name}, nil
}
