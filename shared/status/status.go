// Package status holds the availability status message that Cloudoreg writes
// to platform.sources.status and the customer-facing error texts it may
// carry. The texts (docs/contract.md, "Status messages") are part of the
// contract with the console UI and support documentation (cloudigrade's
// codes), so they are kept verbatim here, in one place, for the processor,
// the Sources stand-in and the tests alike.
package status

import "fmt"

// EventType is the event_type header of every message Cloudoreg writes.
const EventType = "availability_status"

// Healthcheck is the event_type of the liveness messages Sources writes to the
// same topic; readers ignore them.
const Healthcheck = "healthcheck"

// ResourceType is the only resource type Cloudoreg reports on (case-sensitive).
const ResourceType = "Application"

// The two states Cloudoreg reports.
const (
	Available   = "available"
	Unavailable = "unavailable"
)

// Message is the JSON value of a status message.
type Message struct {
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id"`
	Status       string `json:"status"`
	Error        string `json:"error"`
}

// Code identifies why a source is unavailable.
type Code string

// Codes from cloudigrade (kept verbatim: the UI and support docs know them)
// and Cloudoreg's own CR4xxx codes for RHSM registration failures.
const (
	CG1001 Code = "CG1001"
	CG1002 Code = "CG1002"
	CG1004 Code = "CG1004"
	CG2000 Code = "CG2000"
	CG2001 Code = "CG2001"
	CG2002 Code = "CG2002"
	CG2004 Code = "CG2004"
	CG3000 Code = "CG3000"
	CG3002 Code = "CG3002"
	CG3003 Code = "CG3003"
	CR4000 Code = "CR4000"
	CR4001 Code = "CR4001"
)

const prefix = "Could not enable cloud metering. Error code %s. %s"

var texts = map[Code]string{
	CG1001: "AWS ARN must be unique, but another cloud account with the same AWS ARN already exists.",
	CG1002: "AWS account ID must be unique, but another cloud account with the same AWS account ID already exists.",
	CG1004: "Invalid ARN.",
	CG2000: "Required authentication was not found. This is likely the result of an error in sources-api.",
	CG2001: "The authentication has unsupported type; type must be cloud-meter-arn or lighthouse_subscription_id. This is likely the result of an error in sources-api.",
	CG2002: "The authentication's resource has unsupported type; type must be Application. This is likely the result of an error in sources-api.",
	CG2004: "Authentication did not include required Authentication Token in either username or password field.",
	CG3000: "Encountered unknown issue with provided credentials. Please verify provided credentials and try again.",
	CG3002: "An AccessDenied error was received when using the ARN, suggesting that the AWS role is misconfigured. Please verify the AWS role and try again.",
	CG3003: "Failed to verify at least one AWS policy action, suggesting that the policy attached to the role is misconfigured. Please verify the AWS policy and try again.",
	CR4000: "Red Hat could not register the AWS account for cloud access. Please try again later or contact Red Hat support.",
	CR4001: "The source has no Red Hat organization, so the AWS account cannot be registered for cloud access. Please contact Red Hat support.",
}

// Text is the full customer-facing error text for a code. An unknown code
// falls back to CG3000's text rather than showing the customer nothing.
func (c Code) Text() string {
	t, ok := texts[c]
	if !ok {
		return fmt.Sprintf(prefix, CG3000, texts[CG3000])
	}
	return fmt.Sprintf(prefix, c, t)
}

// Codes lists every code, for documentation and tests.
func Codes() []Code {
	return []Code{CG1001, CG1002, CG1004, CG2000, CG2001, CG2002, CG2004, CG3000, CG3002, CG3003, CR4000, CR4001}
}

// AvailableMessage is the message for a verified and registered application.
func AvailableMessage(applicationID string) Message {
	return Message{ResourceType: ResourceType, ResourceID: applicationID, Status: Available, Error: ""}
}

// UnavailableMessage is the message for an application that failed with code.
func UnavailableMessage(applicationID string, code Code) Message {
	return Message{ResourceType: ResourceType, ResourceID: applicationID, Status: Unavailable, Error: code.Text()}
}

// RemovedMessage is the message for an application whose credential is gone
// while the application remains: unavailable with no error text, as
// cloudigrade's delete notice was (the console shows no error to fix).
func RemovedMessage(applicationID string) Message {
	return Message{ResourceType: ResourceType, ResourceID: applicationID, Status: Unavailable, Error: ""}
}
