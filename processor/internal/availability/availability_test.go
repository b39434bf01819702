package availability

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/work"
)

// ids stands in for the work stream's duplicate window: an id it has seen
// is a duplicate.
type ids struct {
	mu   sync.Mutex
	seen map[string]bool
	msgs []work.Message
}

func (q *ids) Enqueue(_ context.Context, m work.Message) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.seen[m.Origin] {
		return true, nil
	}
	q.seen[m.Origin] = true
	q.msgs = append(q.msgs, m)
	return false, nil
}

func serve(t *testing.T, now *time.Time) (*httptest.Server, *ids, map[string]int) {
	t.Helper()
	q := &ids{seen: map[string]bool{}}
	counts := map[string]int{}
	var mu sync.Mutex
	log := logrus.New()
	log.SetOutput(io.Discard)
	h := &Handler{Work: q, Log: logrus.NewEntry(log), Window: time.Minute, Now: func() time.Time { return *now },
		Counted: func(o string) { mu.Lock(); counts[o]++; mu.Unlock() }}
	srv := httptest.NewServer(Mux(h))
	t.Cleanup(srv.Close)
	return srv, q, counts
}

func post(t *testing.T, url, body string, org string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+CloudigradePath, strings.NewReader(body))
	if org != "" {
		req.Header.Set("x-rh-sources-org-id", org)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestOnlySourcesRequestShapeIsAccepted: the body is {"source_id": id} with
// the id a string or a number, a tenant header is required, and a body
// beyond MaxBody is refused; anything else queues nothing.
func TestOnlySourcesRequestShapeIsAccepted(t *testing.T) {
	for _, c := range []struct {
		name, body, org string
		want            int
		outcome         string
	}{
		{"string id", `{"source_id":"12"}`, "1", http.StatusAccepted, "accepted"},
		{"number id", `{"source_id":13}`, "1", http.StatusAccepted, "accepted"},
		{"no tenant", `{"source_id":"14"}`, "", http.StatusBadRequest, "no_tenant"},
		{"no source id", `{}`, "1", http.StatusBadRequest, "bad_request"},
		{"null source id", `{"source_id":null}`, "1", http.StatusBadRequest, "bad_request"},
		{"not digits", `{"source_id":"1.*"}`, "1", http.StatusBadRequest, "bad_request"},
		{"negative", `{"source_id":-1}`, "1", http.StatusBadRequest, "bad_request"},
		{"fraction", `{"source_id":1.5}`, "1", http.StatusBadRequest, "bad_request"},
		{"other field", `{"source_id":"15","org_id":"2"}`, "1", http.StatusBadRequest, "bad_request"},
		{"two documents", `{"source_id":"16"}{"source_id":"17"}`, "1", http.StatusBadRequest, "bad_request"},
		{"array", `[{"source_id":"18"}]`, "1", http.StatusBadRequest, "bad_request"},
		{"form", `source_id=19`, "1", http.StatusBadRequest, "bad_request"},
		{"too large", `{"source_id":"20"` + strings.Repeat(" ", MaxBody) + `}`, "1", http.StatusRequestEntityTooLarge, "too_large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Unix(1_700_000_000, 0)
			srv, q, counts := serve(t, &now)
			if got := post(t, srv.URL, c.body, c.org); got != c.want {
				t.Errorf("HTTP %d, want %d", got, c.want)
			}
			if counts[c.outcome] != 1 {
				t.Errorf("outcomes %v, want one %s", counts, c.outcome)
			}
			if queued := len(q.msgs); (c.want == http.StatusAccepted) != (queued == 1) {
				t.Errorf("%d queued", queued)
			}
		})
	}
}

// TestChecksOfOneSourceCoalesce: within a window, repeated checks of a
// source share one message id (answered 202, counted coalesced); another
// source, or the next window, gets its own.
func TestChecksOfOneSourceCoalesce(t *testing.T) {
	now := time.Unix(1_700_000_000, 0).Truncate(time.Minute)
	srv, q, counts := serve(t, &now)
	for i := 0; i < 5; i++ {
		if got := post(t, srv.URL, `{"source_id":"7"}`, "1"); got != http.StatusAccepted {
			t.Fatalf("HTTP %d", got)
		}
		now = now.Add(10 * time.Second)
	}
	post(t, srv.URL, `{"source_id":"8"}`, "1")
	now = now.Add(time.Minute)
	post(t, srv.URL, `{"source_id":"7"}`, "1")
	if len(q.msgs) != 3 || counts["accepted"] != 3 || counts["coalesced"] != 4 {
		t.Errorf("queued %d, outcomes %v; want 3 queued (7, 8, 7 in the next window), 4 coalesced", len(q.msgs), counts)
	}
}
