// Package supervise starts Cloudoreg's programs as real child processes,
// prefixes their output so interleaved logs stay readable, waits for them
// to be ready, and stops (or kills) them.
package supervise

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc describes a program to run.
type Proc struct {
	Name string
	Path string
	Args []string
	Env  []string // added to this process's environment
	// ReadyURL, when set, answers 200 once the program is ready.
	ReadyURL string
	// ReadyAddr, when set, accepts TCP connections once the program is ready.
	ReadyAddr string
}

// Running is a started process.
type Running struct {
	Proc
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

var outMu sync.Mutex

// Start starts p, copying its output line by line to out as "name | line".
func Start(p Proc, out io.Writer) (*Running, error) {
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	// A process group of its own: Ctrl-C in the terminal reaches only the
	// supervisor, which then stops children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	r := &Running{Proc: p, cmd: cmd, done: make(chan struct{})}
	go prefix(p.Name, pr, out)
	go func() {
		r.err = cmd.Wait()
		_ = pw.Close()
		close(r.done)
	}()
	return r, nil
}

func prefix(name string, in io.Reader, out io.Writer) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		outMu.Lock()
		fmt.Fprintf(out, "%-12s| %s\n", name, sc.Text())
		outMu.Unlock()
	}
}

// Done is closed when the process has exited.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is the exit error once Done is closed.
func (r *Running) Err() error { return r.err }

// Pid is the process id.
func (r *Running) Pid() int { return r.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to grace, then kills.
func (r *Running) Stop(grace time.Duration) error {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		return nil
	case <-time.After(grace):
		r.Kill()
		return fmt.Errorf("%s did not stop within %s and was killed", r.Name, grace)
	}
}

// Kill kills the process at once (SIGKILL) and waits for it to be reaped.
func (r *Running) Kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// WaitReady waits until the process is ready, exits, or ctx ends.
func (r *Running) WaitReady(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if r.ready(ctx) {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("%s exited before it was ready: %w", r.Name, r.err)
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready in time: %w", r.Name, ctx.Err())
		case <-t.C:
		}
	}
}

func (r *Running) ready(ctx context.Context) bool {
	if r.ReadyAddr != "" {
		c, err := net.DialTimeout("tcp", r.ReadyAddr, time.Second)
		if err != nil {
			return false
		}
		_ = c.Close()
	}
	if r.ReadyURL != "" {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.ReadyURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	return true
}
