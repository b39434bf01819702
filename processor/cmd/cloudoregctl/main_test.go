package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi/apitest"
)

const token = "ctl-test-token"

// ctl runs the CLI against the API of e, the token in the environment as
// an operator sets it.
func ctl(e *apitest.Env, token string, args ...string) (code int, stdout, stderr string) {
	env := map[string]string{"CLOUDOREG_API_URL": e.URL, "CLOUDOREG_ADMIN_TOKEN": token}
	var out, errOut bytes.Buffer
	code = run(args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func seeded(t *testing.T) *apitest.Env {
	e := apitest.Start(t, token)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	e.PutOutcome("101", outcomes.Record{OrgID: "1234567", State: "unavailable", Code: "CG3002", ApplicationID: "201",
		AccountID: "210987654321", Attempts: 1, LastEvent: "ApplicationAuthentication.create", Origin: "t/0/5", Time: at})
	e.PutOutcome("102", outcomes.Record{OrgID: "1234567", State: "available", ApplicationID: "202", AccountID: "123456789012",
		Attempts: 1, LastEvent: "Authentication.update", Origin: "t/0/6", Time: at})
	e.RHSM.Register("1234567", rhsm.Account{ID: "123456789012", SourceID: "102", Verified: true})
	e.Park("103", "1234567", 6, at.Add(time.Minute), at.Add(-time.Hour))
	for i := range 3 {
		e.DeadLetter(apitest.Message(fmt.Sprint(300+i), "1234567"), "budget_spent", uint64(i+1))
	}
	return e
}

// TestCommands: every command, as a table and as JSON, with its exit code.
func TestCommands(t *testing.T) {
	e := seeded(t)
	for _, c := range []struct {
		args []string
		code int
		want []string // in stdout (table) or stderr (failures)
	}{
		{[]string{"status", "101"}, 0, []string{"state          unavailable", "CG3002", "Error code CG3002", "not registered", "parked retry   none"}},
		{[]string{"status", "102"}, 0, []string{"available", "registered: 123456789012 (verified)"}},
		{[]string{"status", "103"}, 0, []string{"no outcome recorded", "due 2026-03-04T05:07:07Z, attempt 6, failing since 2026-03-04T04:06:07Z"}},
		{[]string{"status", "999"}, 3, []string{"no such source"}},
		{[]string{"status", "abc"}, 2, []string{"Sources id"}},
		{[]string{"dlq", "list"}, 0, []string{"SEQ", "1    300", "budget_spent", "3    302"}},
		{[]string{"dlq", "show", "2"}, 0, []string{"source      301", "detail      apitest: budget_spent", "work seq    2"}},
		{[]string{"dlq", "show", "99"}, 3, []string{"no such dead letter"}},
		{[]string{"parked", "list"}, 0, []string{"SOURCE", "103", "2026-03-04T05:07:07Z"}},
		{[]string{"reconcile", "101"}, 0, []string{"reconcile of source 101 (org 1234567) enqueued"}},
		{[]string{"reconcile", "999"}, 3, []string{"org_id"}},
		{[]string{"reconcile", "999", "--org", "7654321"}, 0, []string{"org 7654321"}},
		{[]string{"dlq", "replay", "1"}, 0, []string{"dead letter 1 replayed as work"}},
		{[]string{"dlq", "replay", "1"}, 3, []string{"no such dead letter"}},
		{[]string{"dlq", "purge"}, 2, []string{"usage"}},
		{[]string{"dlq", "purge", "--older-than", "soon"}, 2, []string{"duration"}},
		{[]string{"dlq", "replay"}, 2, []string{"usage"}},
		{[]string{"dlq", "show", "x"}, 2, []string{"positive number"}},
		{[]string{"frobnicate"}, 2, []string{"unknown command"}},
		{[]string{"--bogus"}, 2, []string{"flag provided but not defined"}},
		{nil, 2, []string{"usage"}},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, out, errOut := ctl(e, token, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out, errOut)
			}
			text := out
			if code != 0 {
				text = errOut
			}
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("no %q in\n%s", w, text)
				}
			}
		})
	}
}

// TestJSONOutput: --json (before or after the command) prints the API's
// JSON, which scripts decode.
func TestJSONOutput(t *testing.T) {
	e := seeded(t)
	for _, args := range [][]string{
		{"--json", "status", "101"}, {"status", "101", "--json"}, {"dlq", "list", "--json"}, {"dlq", "show", "1", "--json"},
		{"parked", "list", "--json"}, {"reconcile", "102", "--json"}, {"dlq", "purge", "--older-than", "1000h", "--json"},
		{"dlq", "replay", "3", "--json"}, {"dlq", "replay", "--all", "--json"},
	} {
		code, out, errOut := ctl(e, token, args...)
		var v map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
			t.Errorf("%v: exit %d, not a JSON object:\n%s%s", args, code, out, errOut)
		}
	}
	_, out, _ := ctl(e, token, "--json", "status", "101")
	var s struct {
		Outcome struct{ Code string } `json:"outcome"`
	}
	if json.Unmarshal([]byte(out), &s); s.Outcome.Code != "CG3002" {
		t.Errorf("status --json: %s", out)
	}
}

// TestReplayAllAndPurge: --all replays every dead letter (and says which
// could not be replayed); purge empties what is older.
func TestReplayAllAndPurge(t *testing.T) {
	e := seeded(t)
	e.DeadLetter(apitest.Message("305", "1234567"), "internal", 9)
	code, out, errOut := ctl(e, token, "dlq", "replay", "--all")
	if code != 0 || !strings.Contains(out, "4 dead letters replayed, 0 failed") {
		t.Fatalf("replay --all: exit %d\n%s%s", code, out, errOut)
	}
	if _, out, _ := ctl(e, token, "dlq", "list"); !strings.Contains(out, "no dead letters") {
		t.Errorf("after replay --all:\n%s", out)
	}
	e.DeadLetter(apitest.Message("306", "1234567"), "internal", 10)
	if code, out, errOut := ctl(e, token, "dlq", "purge", "--older-than", "0s"); code != 0 || !strings.Contains(out, "1 dead letters older than 0s purged") {
		t.Errorf("purge: exit %d\n%s%s", code, out, errOut)
	}
}

// TestAuthAndConnectionFailures exit 1 with a hint, and never print the
// token.
func TestAuthAndConnectionFailures(t *testing.T) {
	e := seeded(t)
	for _, tok := range []string{"", "wrong-token"} {
		code, out, errOut := ctl(e, tok, "dlq", "list")
		if code != 1 || !strings.Contains(errOut, "CLOUDOREG_ADMIN_TOKEN") || out != "" {
			t.Errorf("token %q: exit %d\n%s%s", tok, code, out, errOut)
		}
		if tok != "" && strings.Contains(errOut, tok) {
			t.Error("the error shows the token")
		}
	}
	var out, errOut bytes.Buffer
	code := run([]string{"--url", "http://127.0.0.1:1", "status", "1"}, func(string) string { return "" }, &out, &errOut)
	if code != 1 {
		t.Errorf("no API: exit %d: %s", code, errOut.String())
	}
}
