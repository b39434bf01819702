package status

import (
	"encoding/json"
	"strings"
	"testing"
)

// contractPrefix is from docs/contract.md, "Status messages": every text starts with it.
const contractPrefix = "Could not enable cloud metering. Error code "

// contractTexts is the table of docs/contract.md, "Status messages", copied verbatim (the UI
// and support documentation know these), plus the README's CR4xxx codes.
var contractTexts = map[Code]string{
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

func TestTextsMatchContract(t *testing.T) {
	for code, after := range contractTexts {
		want := contractPrefix + string(code) + ". " + after
		if got := code.Text(); got != want {
			t.Errorf("%s:\n got %q\nwant %q", code, got, want)
		}
	}
}

// The cloudigrade example message of the fixtures (status-unavailable-cg3002.json).
func TestCG3002FixtureText(t *testing.T) {
	const fixture = "Could not enable cloud metering. Error code CG3002. An AccessDenied error was received when using the ARN, suggesting that the AWS role is misconfigured. Please verify the AWS role and try again."
	if got := CG3002.Text(); got != fixture {
		t.Errorf("got %q", got)
	}
}

func TestCodes(t *testing.T) {
	codes := Codes()
	if len(codes) != len(contractTexts) {
		t.Errorf("Codes() has %d codes, the contract %d", len(codes), len(contractTexts))
	}
	seen := map[Code]bool{}
	for _, c := range codes {
		if seen[c] {
			t.Errorf("%s listed twice", c)
		}
		seen[c] = true
		if _, ok := contractTexts[c]; !ok {
			t.Errorf("%s is not in the contract table", c)
		}
		text := c.Text()
		if !strings.HasPrefix(text, contractPrefix+string(c)+". ") {
			t.Errorf("%s: text %q lacks the contract prefix", c, text)
		}
		if len(text) == len(contractPrefix+string(c)+". ") {
			t.Errorf("%s: nothing after the prefix", c)
		}
	}
}

func TestUnknownCodeFallsBackToCG3000(t *testing.T) {
	for _, c := range []Code{"", "CG9999", "cg1001", "CG1001 ", "%s%v"} {
		if got, want := c.Text(), CG3000.Text(); got != want {
			t.Errorf("%q.Text() = %q, want %q", c, got, want)
		}
	}
}

func TestMessages(t *testing.T) {
	av := AvailableMessage("21")
	if av != (Message{ResourceType: "Application", ResourceID: "21", Status: "available", Error: ""}) {
		t.Errorf("available: %+v", av)
	}
	b, err := json.Marshal(av)
	if err != nil {
		t.Fatal(err)
	}
	// The value of status-available.json; "error" must be present and empty
	// (it clears an older error).
	if got, want := string(b), `{"resource_type":"Application","resource_id":"21","status":"available","error":""}`; got != want {
		t.Errorf("available JSON %s, want %s", got, want)
	}
	un := UnavailableMessage("21", CG3002)
	if un != (Message{ResourceType: "Application", ResourceID: "21", Status: "unavailable", Error: CG3002.Text()}) {
		t.Errorf("unavailable: %+v", un)
	}
	var back map[string]string
	b, _ = json.Marshal(un)
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["resource_type"] != "Application" || back["resource_id"] != "21" || back["status"] != "unavailable" ||
		back["error"] != contractPrefix+"CG3002. "+contractTexts[CG3002] || len(back) != 4 {
		t.Errorf("unavailable JSON %s", b)
	}
	// The delete notice: unavailable, and "error" present and empty.
	b, _ = json.Marshal(RemovedMessage("21"))
	if got, want := string(b), `{"resource_type":"Application","resource_id":"21","status":"unavailable","error":""}`; got != want {
		t.Errorf("removed JSON %s, want %s", got, want)
	}
	if UnavailableMessage("21", "nope").Error != CG3000.Text() {
		t.Error("unknown code not reported as CG3000")
	}
	if EventType != "availability_status" || Healthcheck != "healthcheck" || ResourceType != "Application" {
		t.Error("header and resource type constants differ from the contract")
	}
}
