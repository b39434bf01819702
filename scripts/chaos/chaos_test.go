package chaos_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/chaos"
)

// TestChaosShort runs every fault scenario once at small scale against the
// real programs, built without the race detector and run as processes (the
// harness itself runs under -race). `make chaos` runs the full scale.
func TestChaosShort(t *testing.T) {
	bin := buildPrograms(t)
	logs := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o := chaos.Options{BinDir: bin, Scale: chaos.Short, Seed: 1, LogDir: logs, DataDir: t.TempDir()}
	var results []*chaos.Result
	for i, sc := range chaos.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			o.Progress = testWriter{t}
			r := chaos.RunScenario(ctx, o, i, sc)
			results = append(results, r)
			t.Log(r.Summary())
			if sc.Name == "poison" {
				// Each class of the corpus is skipped for its own reason.
				for _, reason := range []string{"bad_payload", "bad_id", "no_tenant", "bad_identity", "too_large", "identity_too_large", "bad_tenant", "unresolvable"} {
					if r.Skipped[reason] == 0 {
						t.Errorf("no poison skipped as %s: %v", reason, r.Skipped)
					}
				}
			}
			if r.Passed() {
				return
			}
			t.Errorf("invariants failed:\n%s", chaos.Report([]*chaos.Result{r}, true))
			t.Logf("last lines of the programs' logs:\n%s", tail(filepath.Join(logs, sc.Name+".log"), 150))
		})
	}
	t.Logf("summary:\n%s", chaos.Report(results, false))
}

// buildPrograms builds the listener, the processor and the local stack
// (without -race) into a temporary folder.
func buildPrograms(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/cloudoreg/cloudoreg/listener/cmd/listener",
		"github.com/cloudoreg/cloudoreg/processor/cmd/processor",
		"github.com/cloudoreg/cloudoreg/scripts/cmd/stack")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(bytes.TrimRight(b, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
