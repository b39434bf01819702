package ops

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// short are limits a test can wait out.
var short = Limits{
	ReadHeader:     300 * time.Millisecond,
	Read:           500 * time.Millisecond,
	Write:          500 * time.Millisecond,
	Idle:           500 * time.Millisecond,
	MaxHeaderBytes: 4 << 10,
	MaxBodyBytes:   1 << 10,
}

// bodyReader answers with how much of the body it could read, or the error.
func bodyReader(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		return
	}
	fmt.Fprintf(w, "%d", n)
}

func start(t *testing.T, h http.Handler, l Limits) *Server {
	t.Helper()
	s, err := serve("127.0.0.1:0", h, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func TestDefaultLimitsAreSet(t *testing.T) {
	s, err := Serve("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer s.srv.Close()
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 || s.srv.IdleTimeout <= 0 || s.srv.MaxHeaderBytes <= 0 {
		t.Errorf("a limit is missing: %+v", s.srv)
	}
	if DefaultLimits.MaxBodyBytes <= 0 || DefaultLimits.MaxBodyBytes > 1<<20 {
		t.Errorf("body limit %d", DefaultLimits.MaxBodyBytes)
	}
}

// A body of up to the limit is read; a larger one, announced or chunked,
// is refused with 413.
func TestBodyLimit(t *testing.T) {
	s := start(t, http.HandlerFunc(bodyReader), short)
	url := "http://" + s.Addr() + "/"
	for _, tc := range []struct {
		name    string
		body    io.Reader
		want    int
		chunked bool
	}{
		{"at the limit", bytes.NewReader(make([]byte, short.MaxBodyBytes)), http.StatusOK, false},
		{"announced over the limit", bytes.NewReader(make([]byte, short.MaxBodyBytes+1)), http.StatusRequestEntityTooLarge, false},
		{"chunked over the limit", io.MultiReader(strings.NewReader("x"), bytes.NewReader(make([]byte, 64<<10))), http.StatusRequestEntityTooLarge, true},
	} {
		resp, err := http.Post(url, "application/octet-stream", tc.body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

func TestHeaderLimit(t *testing.T) {
	s := start(t, http.HandlerFunc(bodyReader), short)
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/", nil)
	req.Header.Set("x-rh-identity", strings.Repeat("A", 2*short.MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("%d, want 431", resp.StatusCode)
	}
}

// awaitClosed reads from c until the server closes it, and fails if that
// takes longer than limit.
func awaitClosed(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for more than %v", limit)
	}
}

// A client that sends its headers slowly, or its body not at all, or keeps
// an idle connection, is cut off.
func TestSlowAndIdleClientsAreCutOff(t *testing.T) {
	s := start(t, http.HandlerFunc(bodyReader), short)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	t.Run("headers never finished", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\n")
		awaitClosed(t, c, 5*time.Second)
	})
	t.Run("body never sent", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
		awaitClosed(t, c, 5*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial()
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		awaitClosed(t, c, 5*time.Second)
	})
}

// A client that does not read the answer cannot hold the handler: its
// writes fail once the write timeout passes.
func TestWriteTimeout(t *testing.T) {
	failed := make(chan error, 1)
	s := start(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
	}), short)
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes to a client that does not read")
	}
}
