// Package faults lets a test or the chaos harness make a local stand-in
// misbehave for a while: fail requests with a status code, or delay them.
// Each stand-in supplies how a failure looks on its wire (JSON, AWS XML).
package faults

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// AdminPath is where a stand-in serves its fault controls.
const AdminPath = "/_faults"

// Fault is what to inject. Count limits the fault to the next N requests
// (0: no limit); For limits it in time (0: until cleared).
type Fault struct {
	Status  int           `json:"status"`   // HTTP status to fail with; 0: do not fail
	Code    string        `json:"code"`     // protocol error code, e.g. "Throttling" for STS
	Delay   time.Duration `json:"delay_ns"` // added latency before answering
	Count   int           `json:"count"`
	For     time.Duration `json:"for_ns"`
	applied int
	until   time.Time
}

// Writer writes a failure in the stand-in's wire format.
type Writer func(w http.ResponseWriter, status int, code string)

// Injector holds the active fault of one stand-in.
type Injector struct {
	mu    sync.Mutex
	fault *Fault
	write Writer
}

// New returns an Injector that writes failures with write.
func New(write Writer) *Injector { return &Injector{write: write} }

// Set activates f, replacing any active fault.
func (i *Injector) Set(f Fault) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if f.For > 0 {
		f.until = time.Now().Add(f.For)
	}
	i.fault = &f
}

// Clear removes the active fault.
func (i *Injector) Clear() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.fault = nil
}

// take returns the fault to apply to one request, if any.
func (i *Injector) take() (Fault, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	f := i.fault
	if f == nil {
		return Fault{}, false
	}
	if (f.Count > 0 && f.applied >= f.Count) || (!f.until.IsZero() && time.Now().After(f.until)) {
		i.fault = nil
		return Fault{}, false
	}
	f.applied++
	return *f, true
}

// Wrap applies the active fault to requests of next; requests to AdminPath
// are never faulted.
func (i *Injector) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == AdminPath {
			i.serveAdmin(w, r)
			return
		}
		f, ok := i.take()
		if ok && f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if ok && f.Status != 0 {
			i.write(w, f.Status, f.Code)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serveAdmin: POST a Fault as JSON to set it, DELETE to clear it.
func (i *Injector) serveAdmin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		var f Fault
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, "body must be a JSON fault", http.StatusBadRequest)
			return
		}
		i.Set(f)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		i.Clear()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "POST, DELETE")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}
