package sources

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
)

// Event types the stand-in raises, with the real service's names.
const (
	evSourceCreate     = "Source.create"
	evSourceDestroy    = "Source.destroy"
	evSourcePause      = "Source.pause"
	evSourceUnpause    = "Source.unpause"
	evAppCreate        = "Application.create"
	evAppUpdate        = "Application.update"
	evAppDestroy       = "Application.destroy"
	evAppPause         = "Application.pause"
	evAppUnpause       = "Application.unpause"
	evAuthCreate       = "Authentication.create"
	evAuthUpdate       = "Authentication.update"
	evAuthDestroy      = "Authentication.destroy"
	evAppAuthCreate    = "ApplicationAuthentication.create"
	evAppAuthDestroy   = "ApplicationAuthentication.destroy"
	recordTimeLayout   = "2006-01-02 15:04:05 MST"
	encodingJSONHeader = "json"
)

// outEvent is one message for the event stream.
type outEvent struct {
	eventType string
	payload   any
}

// forward is who a change was made for: the real service forwards the
// request's tenant and identity on every event it raises.
type forward struct {
	orgID    string
	account  string
	identity string
}

// generatedIdentity is what the real service puts in x-rh-identity when the
// request carried none (e.g. a PSK call): a System identity for the tenant.
// Field order and the empty internal org id match what it sends.
func generatedIdentity(orgID, account string) string {
	type internal struct {
		OrgID string `json:"org_id"`
	}
	type ident struct {
		OrgID         string   `json:"org_id"`
		AccountNumber string   `json:"account_number"`
		Internal      internal `json:"internal"`
		Type          string   `json:"type"`
	}
	doc := struct {
		Identity     ident `json:"identity"`
		Entitlements any   `json:"entitlements"`
	}{Identity: ident{OrgID: orgID, AccountNumber: account, Type: "System"}}
	raw, _ := json.Marshal(doc)
	return base64.StdEncoding.EncodeToString(raw)
}

// headers builds the headers in the real service's order: tenant headers
// (account first, each only when set), identity, event_type, encoding.
func (f forward) headers(eventType string) []sarama.RecordHeader {
	var h []sarama.RecordHeader
	if f.account != "" {
		h = append(h, sarama.RecordHeader{Key: []byte(event.HeaderAccount), Value: []byte(f.account)})
	}
	if f.orgID != "" {
		h = append(h, sarama.RecordHeader{Key: []byte(event.HeaderOrgID), Value: []byte(f.orgID)})
	}
	return append(h,
		sarama.RecordHeader{Key: []byte(event.HeaderIdentity), Value: []byte(f.identity)},
		sarama.RecordHeader{Key: []byte(event.HeaderEventType), Value: []byte(eventType)},
		sarama.RecordHeader{Key: []byte(event.HeaderEncoding), Value: []byte(encodingJSONHeader)},
	)
}

func (f forward) key() string {
	return event.Tenant{OrgID: f.orgID, AccountNumber: f.account}.Key()
}

// publisher writes to the event stream with one long-lived producer. Callers
// serialise writes (Server.writeMu), so events reach the partition in the
// order the state changed.
type publisher struct {
	producer sarama.SyncProducer
	topic    string
	brokers  []string
	cfg      *sarama.Config
}

func newPublisher(brokers []string, topic string) (*publisher, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "sources-api-standin"
	cfg.Version = kafka.Version
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	// One request in flight: a retried batch must not overtake a later one,
	// consumers rely on the order of a source's events.
	cfg.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("event stream producer: %w", err)
	}
	return &publisher{producer: p, topic: topic, brokers: brokers, cfg: cfg}, nil
}

// publish sends the events one by one and in order, waiting for each ack, so
// that when it returns every event is in Kafka.
func (p *publisher) publish(f forward, events ...outEvent) error {
	for _, ev := range events {
		value, err := json.Marshal(ev.payload)
		if err != nil {
			return fmt.Errorf("marshal %s: %w", ev.eventType, err)
		}
		msg := &sarama.ProducerMessage{
			Topic:   p.topic,
			Key:     sarama.StringEncoder(f.key()),
			Value:   sarama.ByteEncoder(value),
			Headers: f.headers(ev.eventType),
		}
		if err := p.send(msg); err != nil {
			return fmt.Errorf("publish %s: %w", ev.eventType, err)
		}
	}
	return nil
}

// sendPatience is how long a write keeps trying to reach a broker that is
// down or restarting before the stand-in gives up on its events.
const sendPatience = time.Minute

// send delivers one message. A broker restart (the chaos harness restarts
// Kafka under load) must not lose the events of a change already saved, so
// a failed send is tried again, on a fresh producer, for up to
// sendPatience: sarama fails a request that was in flight when the
// connection broke without using its retries, and its client can take
// seconds to notice that a broker is back. A message the broker stored
// before the break may so be written twice; consumers of Sources events
// cope with duplicates (Sources itself re-emits).
func (p *publisher) send(msg *sarama.ProducerMessage) error {
	deadline := time.Now().Add(sendPatience)
	for {
		_, _, err := p.producer.SendMessage(msg)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
		if fresh, ferr := sarama.NewSyncProducer(p.brokers, p.cfg); ferr == nil {
			_ = p.producer.Close()
			p.producer = fresh
		}
	}
}

func (p *publisher) close() error { return p.producer.Close() }

// Event payloads. Field order, types and time formats follow the messages a
// running Sources service writes (see shared/fixtures): ids are numbers except
// the Authentication id, times are "2006-01-02 15:04:05 UTC", and "tenant" is
// the account number.

func recordTime(t time.Time) *string {
	s := t.UTC().Format(recordTimeLayout)
	return &s
}

func recordTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	return recordTime(*t)
}

type sourceEvent struct {
	ID                  int64   `json:"id"`
	CreatedAt           *string `json:"created_at"`
	UpdatedAt           *string `json:"updated_at"`
	PausedAt            *string `json:"paused_at"`
	Name                string  `json:"name"`
	UID                 string  `json:"uid"`
	Version             *string `json:"version"`
	Imported            *string `json:"imported"`
	SourceRef           *string `json:"source_ref"`
	AppCreationWorkflow string  `json:"app_creation_workflow"`
	AvailabilityStatus  string  `json:"availability_status"`
	LastCheckedAt       *string `json:"last_checked_at"`
	LastAvailableAt     *string `json:"last_available_at"`
	SourceTypeID        int64   `json:"source_type_id"`
	Tenant              string  `json:"tenant"`
}

func (v Source) event() sourceEvent {
	return sourceEvent{
		ID: v.ID, CreatedAt: recordTime(v.CreatedAt), UpdatedAt: recordTime(v.UpdatedAt), PausedAt: recordTimePtr(v.PausedAt),
		Name: v.Name, UID: v.UID, AppCreationWorkflow: v.AppCreationWorkflow, AvailabilityStatus: v.AvailabilityStatus,
		LastCheckedAt: recordTimePtr(v.LastCheckedAt), LastAvailableAt: recordTimePtr(v.LastAvailableAt),
		SourceTypeID: v.SourceTypeID, Tenant: v.AccountNumber,
	}
}

type applicationEvent struct {
	ID                      int64           `json:"id"`
	CreatedAt               *string         `json:"created_at"`
	UpdatedAt               *string         `json:"updated_at"`
	PausedAt                *string         `json:"paused_at"`
	AvailabilityStatus      string          `json:"availability_status"`
	AvailabilityStatusError string          `json:"availability_status_error"`
	LastCheckedAt           *string         `json:"last_checked_at"`
	LastAvailableAt         *string         `json:"last_available_at"`
	Extra                   json.RawMessage `json:"extra"`
	SuperkeyData            json.RawMessage `json:"superkey_data"`
	SourceID                int64           `json:"source_id"`
	ApplicationTypeID       int64           `json:"application_type_id"`
	Tenant                  string          `json:"tenant"`
}

func (v Application) event() applicationEvent {
	return applicationEvent{
		ID: v.ID, CreatedAt: recordTime(v.CreatedAt), UpdatedAt: recordTime(v.UpdatedAt), PausedAt: recordTimePtr(v.PausedAt),
		AvailabilityStatus: v.AvailabilityStatus, AvailabilityStatusError: v.AvailabilityStatusError,
		LastCheckedAt: recordTimePtr(v.LastCheckedAt), LastAvailableAt: recordTimePtr(v.LastAvailableAt),
		Extra: v.Extra, SuperkeyData: json.RawMessage("null"),
		SourceID: v.SourceID, ApplicationTypeID: v.ApplicationTypeID, Tenant: v.AccountNumber,
	}
}

type applicationAuthenticationEvent struct {
	ID               int64   `json:"id"`
	CreatedAt        *string `json:"created_at"`
	UpdatedAt        *string `json:"updated_at"`
	PausedAt         *string `json:"paused_at"`
	ApplicationID    int64   `json:"application_id"`
	AuthenticationID int64   `json:"authentication_id"`
	Tenant           string  `json:"tenant"`
}

func (v ApplicationAuthentication) event() applicationAuthenticationEvent {
	return applicationAuthenticationEvent{
		ID: v.ID, CreatedAt: recordTime(v.CreatedAt), UpdatedAt: recordTime(v.UpdatedAt),
		ApplicationID: v.ApplicationID, AuthenticationID: v.AuthenticationID, Tenant: v.AccountNumber,
	}
}

type authenticationEvent struct {
	ID string `json:"id"`
	// The real service (database secret store) does not load created_at for
	// events, so consumers see the zero time; kept so they cope with it.
	CreatedAt               time.Time       `json:"created_at"`
	Name                    string          `json:"name"`
	AuthType                string          `json:"authtype"`
	Username                string          `json:"username"`
	Extra                   json.RawMessage `json:"extra"`
	Version                 string          `json:"version"`
	AvailabilityStatus      *string         `json:"availability_status"`
	LastCheckedAt           *string         `json:"last_checked_at"`
	LastAvailableAt         *string         `json:"last_available_at"`
	AvailabilityStatusError string          `json:"availability_status_error"`
	ResourceType            string          `json:"resource_type"`
	ResourceID              int64           `json:"resource_id"`
	SourceID                int64           `json:"source_id"`
	Tenant                  string          `json:"tenant"`
}

func (v Authentication) event() authenticationEvent {
	return authenticationEvent{
		ID: idString(v.ID), Name: v.Name, AuthType: v.AuthType, Username: v.Username, Extra: v.Extra,
		ResourceType: v.ResourceType, ResourceID: v.ResourceID, SourceID: v.SourceID, Tenant: v.AccountNumber,
	}
}

// destroyEvents lists what a cascading delete raises, in the real order.
func (r removed) destroyEvents() []outEvent {
	var evs []outEvent
	for _, v := range r.links {
		evs = append(evs, outEvent{evAppAuthDestroy, v.event()})
	}
	for _, v := range r.apps {
		evs = append(evs, outEvent{evAppDestroy, v.event()})
	}
	for _, v := range r.sources {
		evs = append(evs, outEvent{evSourceDestroy, v.event()})
	}
	for _, v := range r.auths {
		evs = append(evs, outEvent{evAuthDestroy, v.event()})
	}
	return evs
}
