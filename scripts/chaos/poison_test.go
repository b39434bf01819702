package chaos

import (
	"strings"
	"testing"
)

// The counter sees lines cut anywhere by the writes, and only the
// listener's skip lines.
func TestSkipCounter(t *testing.T) {
	var out strings.Builder
	c := &skipCounter{w: &out}
	text := `{"level":"warning","message":"event skipped: it cannot be processed","app":"cloudoreg-listener","reason":"bad_tenant"}
{"level":"info","message":"event forwarded to the work stream","reason":"not_counted"}
{"level":"warning","message":"event skipped: it cannot be processed","reason":"identity_too_large","app":"cloudoreg-listener"}
{"level":"warning","message":"event skipped: it cannot be processed","app":"cloudoreg-listener","reason":"bad_tenant"}
`
	for i := 0; i < len(text); i += 7 {
		if _, err := c.Write([]byte(text[i:min(i+7, len(text))])); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != text {
		t.Error("the output was not passed through unchanged")
	}
	got := c.counts()
	if len(got) != 2 || got["bad_tenant"] != 2 || got["identity_too_large"] != 1 {
		t.Errorf("counts %v", got)
	}
	if s := formatSkipped(got); s != "skipped 3 (bad_tenant 2, identity_too_large 1)" {
		t.Errorf("formatted %q", s)
	}
	if s := formatSkipped(nil); s != "skipped 0" {
		t.Errorf("formatted %q", s)
	}
}
