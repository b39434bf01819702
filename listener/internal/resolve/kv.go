package resolve

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// IndexBucket is the JetStream KV bucket of the routing index.
const IndexBucket = "CLOUDOREG_ROUTES"

// KVIndex is the routing index in a JetStream KV bucket.
type KVIndex struct{ kv jetstream.KeyValue }

// OpenKVIndex creates or updates the bucket. Entries expire after ttl: long
// enough to outlive any source a customer deletes, short enough to forget
// applications of sources that are long gone.
func OpenKVIndex(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (*KVIndex, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      IndexBucket,
		Description: "Cloudoreg listener routing index: application id -> source id",
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("declare KV %s: %w", IndexBucket, err)
	}
	return &KVIndex{kv: kv}, nil
}

func key(applicationID string) string { return "app." + applicationID }

// Get implements Index.
func (i *KVIndex) Get(ctx context.Context, applicationID string) (string, bool, error) {
	e, err := i.kv.Get(ctx, key(applicationID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("routing index get: %w", err)
	}
	return string(e.Value()), true, nil
}

// Put implements Index.
func (i *KVIndex) Put(ctx context.Context, applicationID, sourceID string) error {
	if _, err := i.kv.Put(ctx, key(applicationID), []byte(sourceID)); err != nil {
		return fmt.Errorf("routing index put: %w", err)
	}
	return nil
}
