package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
)

// benchOrg is the tenant of the listener rows' events.
const benchOrg = "7000001"

// sourcesPerOrg is how many of the processor rows' sources share an org. An
// org holds a few AWS sources, not thousands: re-verifying a held account
// reads its org's RHSM listing, whose size is the org's number of accounts,
// so one org holding every source of the bench would make each
// re-verification read them all.
const sourcesPerOrg = 10

// orgOf is the org of the bench's i-th source.
func orgOf(i int) string { return strconv.Itoa(7000001 + i/sourcesPerOrg) }

// kafkaEvent is one event of the Sources event stream as the bench writes it.
type kafkaEvent struct {
	Type  string
	Key   string // the source id, as Sources keys its events
	Value []byte
	Org   string // the tenant header (benchOrg when empty)
}

// ignoredTypes are event types Sources emits that Cloudoreg ignores, in
// about the proportions of the real stream (most are updates).
var ignoredTypes = []string{
	"Source.update", "Source.update", "Endpoint.update", "Records.update", "Application.update",
	"Authentication.create", "Source.create", "Endpoint.create", "Application.create",
}

// payload is an event value shaped like Sources' (its size matters for the
// decoding cost): the resource with its timestamps and tenant.
func payload(fields map[string]any) []byte {
	v := map[string]any{
		"created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
		"availability_status": "available", "last_checked_at": "2026-01-02T03:04:05Z",
		"tenant": benchOrg, "extra": map[string]any{"_superkey": map[string]any{}},
	}
	for k, f := range fields {
		v[k] = f
	}
	b, _ := json.Marshal(v)
	return b
}

// pauseEvent is an Application.pause of application app of source src: the
// listener routes it, the payload carries the source id.
func pauseEvent(src, app int) kafkaEvent {
	return kafkaEvent{Type: string(event.AppPause), Key: strconv.Itoa(src),
		Value: payload(map[string]any{"id": app, "source_id": src, "application_type_id": 5, "paused_at": "2026-01-02T03:04:05Z"})}
}

// ignoredEvent is an event of a type Cloudoreg ignores.
func ignoredEvent(i, src int) kafkaEvent {
	return kafkaEvent{Type: ignoredTypes[i%len(ignoredTypes)], Key: strconv.Itoa(src),
		Value: payload(map[string]any{"id": i, "source_id": src, "name": "source-" + strconv.Itoa(src)})}
}

// appAuthEvent is an ApplicationAuthentication.create: the payload names only
// the application, so the listener resolves the source id.
func appAuthEvent(i, app int) kafkaEvent {
	return kafkaEvent{Type: string(event.AppAuthCreate), Key: strconv.Itoa(app),
		Value: payload(map[string]any{"id": i, "application_id": app, "authentication_id": 900000 + i})}
}

// unpauseEvent is an Application.unpause of a source the stand-in holds.
func unpauseEvent(s source) kafkaEvent {
	src, _ := strconv.Atoi(s.ID)
	app, _ := strconv.Atoi(s.AppID)
	return kafkaEvent{Type: string(event.AppUnpause), Key: s.ID, Org: s.Org,
		Value: payload(map[string]any{"id": app, "source_id": src, "application_type_id": 5})}
}

func (e *env) producer(topic string) (*kgo.Client, error) {
	return kgo.NewClient(kgo.SeedBrokers(e.stack.KafkaAddr), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
}

func record(ev kafkaEvent) *kgo.Record {
	org := cmp.Or(ev.Org, benchOrg)
	return &kgo.Record{Key: []byte(ev.Key), Value: ev.Value, Headers: []kgo.RecordHeader{
		{Key: event.HeaderEventType, Value: []byte(ev.Type)},
		{Key: event.HeaderOrgID, Value: []byte(org)},
		{Key: "encoding", Value: []byte("json")},
	}}
}

// produce writes n events (gen(i) for i < n) to topic and waits until the
// broker has them all.
func (e *env) produce(ctx context.Context, topic string, n int, gen func(i int) kafkaEvent) error {
	cl, err := e.producer(topic)
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu sync.Mutex
	var first error
	for i := 0; i < n; i++ {
		cl.Produce(ctx, record(gen(i)), func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first
}

// source is one source created in the Sources stand-in: one cloud-meter
// application with a cloud-meter-arn authentication, its own AWS account.
type source struct {
	ID, AppID, AuthID, Account, Org string
}

const benchExternalID = "cloudoreg-bench-external-id"

func benchRole(i int) string {
	return fmt.Sprintf("arn:aws:iam::%012d:role/cloudoreg-bench", 100000000000+i)
}

// createSources creates n sources through the stand-in's bulk_create, as the
// console does, and trusts their roles at the STS stand-in.
func (e *env) createSources(ctx context.Context, from, n int) ([]source, error) {
	trust := e.stack.STS.Trust()
	out := make([]source, n)
	errs := make([]error, n)
	slots := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		role := benchRole(from + i)
		trust.Roles = append(trust.Roles, sts.Role{ARN: role, ExternalID: benchExternalID})
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			out[i], errs[i] = e.bulkCreate(ctx, fmt.Sprintf("bench-%d", from+i), role, orgOf(from+i))
		})
	}
	wg.Wait()
	e.stack.STS.SetTrust(trust)
	return out, errors.Join(errs...)
}

func (e *env) bulkCreate(ctx context.Context, name, arn, org string) (source, error) {
	body, _ := json.Marshal(map[string]any{
		"sources":      []any{map[string]any{"name": name, "source_type_name": "amazon"}},
		"applications": []any{map[string]any{"source_name": name, "application_type_name": "cloud-meter"}},
		"authentications": []any{map[string]any{
			"resource_type": "application", "resource_name": "cloud-meter", "authtype": "cloud-meter-arn",
			"username": arn, "extra": map[string]any{"external_id": benchExternalID},
		}},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.stack.SourcesURL+"/api/sources/v3.1/bulk_create", bytes.NewReader(body))
	if err != nil {
		return source{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(event.HeaderOrgID, org)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return source{}, err
	}
	defer resp.Body.Close()
	var got struct{ Sources, Applications, Authentications []struct{ ID string } }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusCreated || len(got.Sources) != 1 || len(got.Applications) != 1 || len(got.Authentications) != 1 {
		return source{}, fmt.Errorf("bulk_create %s: HTTP %d, %w", name, resp.StatusCode, err)
	}
	return source{ID: got.Sources[0].ID, AppID: got.Applications[0].ID, AuthID: got.Authentications[0].ID, Account: arn[13:25], Org: org}, nil
}
