package awsverify

// The tests run the real STS stand-in (scripts/internal/standin/sts) on a
// loopback port. That package is internal to the scripts module, so this one
// cannot import it: the stand-in's small server command
// (scripts/internal/standin/sts/testdata/serve) is built once and started per
// test, and driven over its admin routes (/_trust, /_faults, /_calls), the
// same way out-of-process harnesses drive it.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	repoRoot        = filepath.Join("..", "..", "..")
	standinPkgDir   = filepath.Join(repoRoot, "scripts", "internal", "standin", "sts")
	trustFile       = filepath.Join(repoRoot, "scripts", "sts-trust.json")
	buildOnce       sync.Once
	standinBin      string
	standinBuildErr error
	tmpDir          string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "awsverify-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = dir
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

// standinBinary builds the stand-in's server command once.
func standinBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			standinBuildErr = fmt.Errorf("the go command is needed to build the STS stand-in: %w", err)
			return
		}
		bin := filepath.Join(tmpDir, "sts-standin")
		cmd := exec.Command(goBin, "build", "-o", bin, "./testdata/serve")
		cmd.Dir = standinPkgDir
		if out, err := cmd.CombinedOutput(); err != nil {
			standinBuildErr = fmt.Errorf("build the STS stand-in in %s: %v\n%s", standinPkgDir, err, out)
			return
		}
		standinBin = bin
	})
	if standinBuildErr != nil {
		t.Fatal(standinBuildErr)
	}
	return standinBin
}

// standin is one running stand-in process with the shipped trust table.
type standin struct {
	URL string
}

func startStandin(t *testing.T) *standin {
	t.Helper()
	bin := standinBinary(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-trust", trustFile)
	cmd.Stdout, cmd.Stderr = w, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		r.Close()
		if t.Failed() {
			t.Logf("STS stand-in log:\n%s", logs.String())
		}
	})

	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Scan()
		first <- sc.Text()
		_, _ = io.Copy(io.Discard, r)
	}()
	select {
	case line := <-first:
		url, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			t.Fatalf("STS stand-in did not start: %q", line)
		}
		return &standin{URL: url}
	case <-time.After(30 * time.Second):
		t.Fatal("STS stand-in did not start within 30s")
	}
	return nil
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
