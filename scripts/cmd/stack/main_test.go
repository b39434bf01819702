package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// build compiles bin/stack into a directory outside the repository.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// command runs bin from an empty directory, every port free unless set.
func command(t *testing.T, bin string, env ...string) (*exec.Cmd, *testkit.SyncBuffer) {
	p := testkit.FreePorts(t, 5)
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(p[0]), "NATS_PORT="+strconv.Itoa(p[1]),
		"SOURCES_PORT="+strconv.Itoa(p[2]), "RHSM_PORT="+strconv.Itoa(p[3]), "STS_PORT="+strconv.Itoa(p[4]))
	cmd.Env = append(cmd.Env, env...)
	out := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// TestStack runs the program as a developer does, from a directory that is
// not the repository: it starts (its STS trust table is built in), with one
// NATS server or a cluster of three (STACK_NATS_CLUSTER=3, all listed in its
// ready line), and stops on SIGTERM with 0; with a port taken it prints the
// real error and exits non-zero, without a panic.
func TestStack(t *testing.T) {
	bin := build(t)
	for _, c := range []struct {
		name    string
		env     []string
		servers int
	}{
		{"runs from any directory", nil, 1},
		{"a NATS cluster", []string{"STACK_NATS_CLUSTER=3", "NATS_PORT=0", "STACK_NATS_ROUTE_PORT=0"}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd, out := command(t, bin, c.env...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for !strings.Contains(out.String(), "local stack ready") {
				if time.Now().After(deadline) || strings.Contains(out.String(), "cannot start") {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("the stack did not start:\n%s", out.String())
				}
				<-tick.C
			}
			if ready := readyLine(out.String()); strings.Count(ready, "nats://") != c.servers {
				t.Errorf("want %d NATS servers in the ready line: %s", c.servers, ready)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Errorf("exit %v on SIGTERM:\n%s", err, out.String())
			}
		})
	}
	t.Run("a port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cmd, out := command(t, bin, "SOURCES_PORT="+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		err = cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("exit %v, want a non-zero exit code:\n%s", err, out.String())
		}
		text := out.String()
		if !strings.Contains(text, "address already in use") || !strings.Contains(text, "sources stand-in") {
			t.Errorf("the output does not name the error:\n%s", text)
		}
		if strings.Contains(text, "panic") {
			t.Errorf("it panicked:\n%s", text)
		}
	})
}

func readyLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "local stack ready") {
			return l
		}
	}
	return ""
}
