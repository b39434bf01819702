package awsverify

// The tests run the real STS stand-in (shared/standin/sts) on a loopback
// port, and drive it over its admin routes (/_trust, /_faults, /_calls), as
// the out-of-process harnesses do.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
	"github.com/sirupsen/logrus"
)

// trustFile is the table the local stack's STS stand-in trusts.
var trustFile = filepath.Join("..", "..", "..", "scripts", "sts-trust.json")

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "awsverify-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hermeticAWSEnv(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hermeticAWSEnv keeps the developer's AWS environment (profiles, regions,
// endpoint overrides, instance metadata) out of the tests.
func hermeticAWSEnv(dir string) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// standin is one running stand-in with the shipped trust table.
type standin struct {
	URL string
}

func startStandin(t *testing.T) *standin {
	t.Helper()
	trust, err := sts.LoadTrust(trustFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	srv := httptest.NewServer(sts.New(trust, log))
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("STS stand-in log:\n%s", logs.String())
		}
	})
	return &standin{URL: srv.URL}
}

// call is the stand-in's record of one API call (its Call type, as JSON).
type call struct {
	Action          string `json:"action"`
	RoleARN         string `json:"role_arn"`
	RoleSessionName string `json:"role_session_name"`
	ExternalIDSent  bool   `json:"external_id_sent"`
	ExternalID      string `json:"external_id"`
	PolicySent      bool   `json:"policy_sent"`
	Policy          string `json:"policy"`
	DurationSeconds int    `json:"duration_seconds"`
	AccessKeyID     string `json:"access_key_id"`
	Status          int    `json:"status"`
	ErrorCode       string `json:"error_code"`
}

func (s *standin) do(t *testing.T, method, path, body string, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d, want %d", method, path, resp.StatusCode, want)
	}
	return resp
}

// fault sets a fault (JSON of the faults package's Fault).
func (s *standin) fault(t *testing.T, fault string) {
	t.Helper()
	s.do(t, http.MethodPost, "/_faults", fault, http.StatusNoContent)
}

// trust replaces the trust table (JSON of the stand-in's Trust).
func (s *standin) trust(t *testing.T, table string) {
	t.Helper()
	s.do(t, http.MethodPost, "/_trust", table, http.StatusNoContent)
}

func (s *standin) calls(t *testing.T) []call {
	t.Helper()
	var calls []call
	if err := json.NewDecoder(s.do(t, http.MethodGet, "/_calls", "", http.StatusOK).Body).Decode(&calls); err != nil {
		t.Fatal(err)
	}
	return calls
}
