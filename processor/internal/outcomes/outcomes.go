// Package outcomes records, per source, what the last reconcile did, so an
// operator can ask "what happened to source 123?" (nats kv get
// CLOUDOREG_SOURCES source.123).
package outcomes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket of outcomes.
const Bucket = "CLOUDOREG_SOURCES"

// Record is one source's last outcome. No secrets: it is for operators.
type Record struct {
	// OrgID is the org the work ran under: who may read the record through
	// the status API.
	OrgID         string    `json:"org_id,omitempty"`
	State         string    `json:"state"`
	Code          string    `json:"code,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	ApplicationID string    `json:"application_id,omitempty"`
	AccountID     string    `json:"aws_account_id,omitempty"`
	Attempts      int       `json:"attempts"`
	LastEvent     string    `json:"last_event"`
	Origin        string    `json:"origin"`
	Time          time.Time `json:"time"`
}

// Store writes outcome records.
type Store struct{ kv jetstream.KeyValue }

// Open creates or updates the bucket. Records expire after ttl.
func Open(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Cloudoreg: last outcome per source (source.<id>)",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		TTL:         ttl,
		History:     5,
	})
	if err != nil {
		return nil, fmt.Errorf("declare KV %s: %w", Bucket, err)
	}
	return New(kv), nil
}

// New is a Store over an opened bucket.
func New(kv jetstream.KeyValue) *Store { return &Store{kv: kv} }

// Key is the KV key of a source.
func Key(sourceID string) string { return "source." + sourceID }

// Put records r for sourceID.
func (s *Store) Put(ctx context.Context, sourceID string, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, Key(sourceID), b)
	return err
}

// ErrNotFound means no outcome is recorded for the source (or it expired).
var ErrNotFound = errors.New("no outcome recorded")

// Get reads the record of sourceID.
func (s *Store) Get(ctx context.Context, sourceID string) (Record, error) {
	var r Record
	e, err := s.kv.Get(ctx, Key(sourceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(e.Value(), &r)
}
