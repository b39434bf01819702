// Package httpstatus records the status code a stand-in's handler answered
// with, for the stand-ins' call logs.
package httpstatus

import "net/http"

// Recorder passes everything to the ResponseWriter it wraps and keeps the
// first status written: an explicit WriteHeader, or 200 on the first Write.
type Recorder struct {
	http.ResponseWriter
	Status int // 0 until the handler wrote something
}

// WriteHeader keeps code if it is the first status, and sends it.
func (r *Recorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write counts as a 200 when nothing was written before, and sends b.
func (r *Recorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
