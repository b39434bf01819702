// Command demo is `make demo`: it starts the whole system, creates sources
// through the Sources stand-in's REST API as the console would, waits for
// their outcomes, shows what the customer and RHSM see, fixes a broken
// source, deletes one, stops everything, and exits 0 only if every outcome
// is the expected one. Logs of the programs go to bin/demo.log.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/internal/localrun"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

const (
	org      = "1234567"
	external = "cloudoreg-demo-external-id"
	timeout  = 60 * time.Second
	// adminToken is the processors' status API admin token, for cloudoregctl.
	adminToken = "cloudoreg-demo-admin-token"
)

func main() {
	bin := flag.String("bin", "bin", "folder with the binaries")
	free := flag.Bool("free-ports", false, "run on free ports instead of the README's (beside a running `make run`)")
	flag.Parse()
	var ports *localrun.Ports
	if *free {
		p, err := localrun.FreePorts(2, 1)
		if err != nil {
			fail(err)
		}
		ports = &p
	}
	logPath := filepath.Join(*bin, "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		fail(err)
	}
	defer logFile.Close()
	fmt.Printf("Starting the local stack, a listener and two processors (logs: %s)...\n", logPath)
	sys, err := localrun.Start(context.Background(), localrun.Options{
		BinDir: *bin, Processors: 2, Out: logFile, LogFormat: "text", Env: []string{"CLOUDOREG_ADMIN_TOKEN=" + adminToken}, Ports: ports,
	})
	if err != nil {
		_ = sys.Stop(10 * time.Second)
		fail(err)
	}
	sourcesURL, rhsmURL = sys.SourcesURL(), sys.RHSMBaseURL()+"/management/v1"
	sources, ok := scenario()
	apiURL := fmt.Sprintf("http://127.0.0.1:%d", sys.Ports().ProcessorPrivate[0])
	ok = printStatuses(*bin, apiURL, sources) && ok
	fmt.Println("Stopping...")
	if err := sys.Stop(30 * time.Second); err != nil {
		fmt.Println("  ", err)
		ok = false
	}
	if !ok {
		fmt.Println("DEMO FAILED: an outcome was not the expected one (see above and " + logPath + ")")
		os.Exit(1)
	}
	fmt.Println("Demo passed: every source ended as expected.")
}

// Where the stand-ins listen (the README's ports unless -free-ports).
var sourcesURL, rhsmURL = localrun.SourcesURL, localrun.RHSMURL

type source struct {
	label, sourceID, appID, authID string
}

// scenario runs the demo steps; it returns the sources it made and whether
// every outcome was the expected one.
func scenario() ([]source, bool) {
	fmt.Println()
	fmt.Println("1. Create three sources, as the console does (bulk_create):")
	a := create("trusted role", "demo-trusted", "arn:aws:iam::123456789012:role/cloud-meter-trusted")
	b := create("denied role", "demo-denied", "arn:aws:iam::210987654321:role/cloud-meter-denied")
	c := create("invalid ARN", "demo-bad-arn", "arn:aws:iam::1234:role/not-an-account")
	ok := expect(a, status.Available, "", "123456789012")
	ok = expect(b, status.Unavailable, status.CG3002, "") && ok
	ok = expect(c, status.Unavailable, status.CG1004, "") && ok

	fmt.Println()
	fmt.Println("2. The customer fixes the denied source: PATCH its authentication to a role that trusts Cloudoreg:")
	call(http.MethodPatch, "/api/sources/v3.1/authentications/"+b.authID, map[string]any{
		"username": "arn:aws:iam::456789012345:role/cloud-meter-open",
	}, nil)
	ok = expect(b, status.Available, "", "456789012345") && ok

	fmt.Println()
	fmt.Println("3. The customer deletes the trusted source: RHSM must forget its AWS account:")
	call(http.MethodDelete, "/api/sources/v3.1/sources/"+a.sourceID, nil, nil)
	gone := awaitRegistration(a.sourceID, false)
	fmt.Printf("   %-14s source %-6s deleted        RHSM holds for it: %s\n", a.label, a.sourceID, orNone(registration(a.sourceID)))
	ok = gone && ok
	fmt.Println()
	fmt.Printf("RHSM now holds for org %s: %s\n", org, strings.Join(registrations(), ", "))
	return []source{a, b, c}, ok
}

// printStatuses shows each source as an operator sees it, through
// cloudoregctl and the processor's status API; false if a call failed.
func printStatuses(bin, apiURL string, sources []source) bool {
	fmt.Println()
	fmt.Println("4. What an operator sees (cloudoregctl status <source-id>):")
	ok := true
	for _, s := range sources {
		fmt.Printf("\n$ cloudoregctl status %s    # %s\n", s.sourceID, s.label)
		cmd := exec.Command(filepath.Join(bin, "cloudoregctl"), "status", s.sourceID)
		cmd.Env = append(os.Environ(), "CLOUDOREG_API_URL="+apiURL, "CLOUDOREG_ADMIN_TOKEN="+adminToken)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		if err := cmd.Run(); err != nil {
			fmt.Println("   cloudoregctl:", err)
			ok = false
		}
	}
	return ok
}

func create(label, name, arn string) source {
	body := map[string]any{
		"sources":      []any{map[string]any{"name": name, "source_type_name": "amazon"}},
		"applications": []any{map[string]any{"source_name": name, "application_type_name": "cloud-meter"}},
		"authentications": []any{map[string]any{
			"resource_type": "application", "resource_name": "cloud-meter",
			"authtype": "cloud-meter-arn", "username": arn, "extra": map[string]any{"external_id": external},
		}},
	}
	var out struct{ Sources, Applications, Authentications []struct{ ID string } }
	call(http.MethodPost, "/api/sources/v3.1/bulk_create", body, &out)
	if len(out.Sources) != 1 || len(out.Applications) != 1 || len(out.Authentications) != 1 {
		fail(fmt.Errorf("bulk_create answered %+v", out))
	}
	return source{label, out.Sources[0].ID, out.Applications[0].ID, out.Authentications[0].ID}
}

// expect waits for the application's status and prints what the customer
// and RHSM see; it reports whether that is what was wanted.
func expect(s source, want string, code status.Code, account string) bool {
	st, errText := awaitStatus(s.appID, want)
	reg := registration(s.sourceID)
	fmt.Printf("   %-14s source %-6s %-12s RHSM: %-14s %s\n", s.label, s.sourceID, orNone(st), orNone(reg), errText)
	wantErr := ""
	if code != "" {
		wantErr = code.Text()
	}
	return st == want && errText == wantErr && reg == account
}

// awaitStatus polls Sources until the application's status is want (or the
// time is up) and returns what Sources shows.
func awaitStatus(appID, want string) (string, string) {
	var app struct {
		Status string `json:"availability_status"`
		Error  string `json:"availability_status_error"`
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		call(http.MethodGet, "/api/sources/v3.1/applications/"+appID, nil, &app)
		if app.Status == want {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return app.Status, app.Error
}

func awaitRegistration(sourceID string, present bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if (registration(sourceID) != "") == present {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// registration is the AWS account RHSM holds for the source, or "".
func registration(sourceID string) string {
	for _, r := range enabled() {
		if r.SourceID == sourceID {
			return r.ID
		}
	}
	return ""
}

func registrations() []string {
	var out []string
	for _, r := range enabled() {
		out = append(out, r.ID+" (source "+r.SourceID+")")
	}
	slices.Sort(out)
	if out == nil {
		return []string{"nothing"}
	}
	return out
}

type account struct {
	ID       string `json:"id"`
	SourceID string `json:"sourceId"`
}

func enabled() []account {
	req, _ := http.NewRequest(http.MethodGet, rhsmURL+"/cloud_access_providers/enabled", nil)
	req.Header.Set("X-RhsmApi-AccountID", org)
	var out struct {
		Body []struct{ Accounts []account }
	}
	do(req, &out)
	var accounts []account
	for _, p := range out.Body {
		accounts = append(accounts, p.Accounts...)
	}
	return accounts
}

// call sends a request to the Sources stand-in as the org.
func call(method, path string, body, out any) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, sourcesURL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-rh-sources-org-id", org)
	do(req, out)
}

func do(req *http.Request, out any) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		fail(fmt.Errorf("%s %s: HTTP %d: %s", req.Method, req.URL.Path, resp.StatusCode, b))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			fail(fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err))
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "demo:", err)
	os.Exit(1)
}
