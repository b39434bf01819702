// Command cloudoregctl answers operators' questions through the processor's
// status API: a source's status, the dead letters (list, show, replay,
// purge), the parked retries, and a reconcile on demand. Tables for people,
// --json for scripts. Exit codes: 0 ok, 1 the API failed or refused, 2 usage,
// 3 not found.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

// DefaultURL is the local processor's private port.
const DefaultURL = "http://127.0.0.1:10000"

const usage = `usage: cloudoregctl [--url URL] [--token TOKEN] [--json] COMMAND

commands:
  status <source-id>             a source's last outcome, parked retry and RHSM registration
  dlq list                       dead letters, oldest first
  dlq show <seq>                 one dead letter with its error
  dlq replay <seq> | --all       republish to the work stream, then delete the dead letter
  dlq purge --older-than <dur>   delete dead letters older than a duration (e.g. 72h)
  parked list                    parked retries, soonest due first
  reconcile <source-id> [--org <org-id>]   re-verify a source now

environment: CLOUDOREG_API_URL (default ` + DefaultURL + `), CLOUDOREG_ADMIN_TOKEN
exit codes: 0 ok, 1 the API failed or refused, 2 usage, 3 not found
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// cli is one invocation.
type cli struct {
	url, token, org string
	json, all       bool
	olderThan       string
	out, errOut     io.Writer
	http            *http.Client
}

// run is the whole program, so tests run it against a real API.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{out: stdout, errOut: stderr, http: &http.Client{Timeout: 30 * time.Second}}
	fs := flag.NewFlagSet("cloudoregctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.url, "url", or(getenv("CLOUDOREG_API_URL"), DefaultURL), "status API base URL")
	fs.StringVar(&c.token, "token", getenv("CLOUDOREG_ADMIN_TOKEN"), "admin token")
	fs.BoolVar(&c.json, "json", false, "print the API's JSON")
	fs.BoolVar(&c.all, "all", false, "dlq replay: every dead letter")
	fs.StringVar(&c.olderThan, "older-than", "", "dlq purge: the age to purge beyond")
	fs.StringVar(&c.org, "org", "", "reconcile: the org of a source with no recorded outcome")
	words, err := parseInterspersed(fs, args)
	if err != nil {
		return c.usage(err.Error())
	}
	return c.dispatch(words)
}

// parseInterspersed lets flags stand anywhere: after the command too.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return words, nil
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func or(v, fallback string) string {
	if v != "" {
		return v
	}
	return fallback
}

func (c *cli) usage(msg string) int {
	if msg != "" {
		fmt.Fprintln(c.errOut, "cloudoregctl:", msg)
	}
	fmt.Fprint(c.errOut, usage)
	return exitUsage
}

func (c *cli) dispatch(w []string) int {
	cmd := strings.Join(w[:min(len(w), 2)], " ")
	switch {
	case len(w) == 2 && w[0] == "status":
		return c.status(w[1])
	case len(w) == 2 && w[0] == "reconcile":
		return c.reconcile(w[1])
	case len(w) == 2 && cmd == "dlq list":
		return c.dlqList()
	case len(w) == 2 && cmd == "parked list":
		return c.parkedList()
	case len(w) == 3 && cmd == "dlq show":
		return c.dlqShow(w[2])
	case len(w) == 3 && cmd == "dlq replay" && !c.all:
		return c.dlqReplay(w[2])
	case len(w) == 2 && cmd == "dlq replay" && c.all:
		return c.dlqReplayAll()
	case len(w) == 2 && cmd == "dlq purge" && c.olderThan != "":
		return c.dlqPurge()
	case len(w) == 0:
		return c.usage("")
	}
	return c.usage("unknown command or wrong arguments: " + strings.Join(w, " "))
}

// apiError is an answer other than 2xx.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }

// call sends one request and decodes a 2xx answer into out (and keeps its
// raw JSON for --json).
func (c *cli) call(method, path string, query url.Values, out any) ([]byte, error) {
	u := strings.TrimSuffix(c.url, "/") + statusapi.Prefix + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	// The operator names the API (CLOUDOREG_API_URL, --url): talking to it is the point.
	req, err := http.NewRequest(method, u, nil) //nolint:gosec // G704: the URL is the operator's choice
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req) //nolint:gosec // G704: see above
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e statusapi.ErrorResponse
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return nil, &apiError{status: resp.StatusCode, msg: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return nil, fmt.Errorf("unreadable answer: %w", err)
		}
	}
	return body, nil
}

// fail reports err and maps it to an exit code.
func (c *cli) fail(err error) int {
	fmt.Fprintln(c.errOut, "cloudoregctl:", err)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.status == http.StatusNotFound:
		return exitNotFound
	case errors.As(err, &ae) && ae.status == http.StatusBadRequest:
		return exitUsage
	case errors.As(err, &ae) && (ae.status == http.StatusUnauthorized || ae.status == http.StatusForbidden):
		fmt.Fprintln(c.errOut, "cloudoregctl: set CLOUDOREG_ADMIN_TOKEN (or --token) to the processor's admin token")
	}
	return exitFailure
}

// printJSON prints an answer as indented JSON.
func (c *cli) printJSON(raw []byte) int {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		b.Reset()
		b.Write(raw)
	}
	fmt.Fprintln(c.out, strings.TrimSpace(b.String()))
	return exitOK
}

// answer prints a call's outcome: its error, the raw JSON with --json, else
// the table write makes.
func (c *cli) answer(raw []byte, err error, write func(tw *tabwriter.Writer)) int {
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	return c.table(write)
}

func (c *cli) table(write func(tw *tabwriter.Writer)) int {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	write(tw)
	if err := tw.Flush(); err != nil {
		return exitFailure
	}
	return exitOK
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string { return or(s, "-") }

func (c *cli) printValue(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return c.fail(err)
	}
	return c.printJSON(b)
}
