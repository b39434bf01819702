package workstream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// NATS header names of a work message.
const (
	HeaderKind             = "Cloudoreg-Kind"
	HeaderSourceID         = "Cloudoreg-Source-Id"
	HeaderApplicationID    = "Cloudoreg-Application-Id"
	HeaderAuthenticationID = "Cloudoreg-Authentication-Id"
	HeaderOrgID            = "Cloudoreg-Org-Id"
	HeaderAccount          = "Cloudoreg-Account-Number"
	HeaderIdentity         = "Cloudoreg-Identity"
	HeaderOrigin           = "Cloudoreg-Origin"
	HeaderAttempt          = "Cloudoreg-Attempt"
	HeaderFirstFailure     = "Cloudoreg-First-Failure"
)

// Header encodes m as NATS headers.
func Header(m work.Message) nats.Header {
	h := nats.Header{}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(HeaderKind, m.Kind)
	set(HeaderSourceID, m.SourceID)
	set(HeaderApplicationID, m.ApplicationID)
	set(HeaderAuthenticationID, m.AuthenticationID)
	set(HeaderOrgID, m.Tenant.OrgID)
	set(HeaderAccount, m.Tenant.AccountNumber)
	set(HeaderIdentity, m.Identity)
	set(HeaderOrigin, m.Origin)
	if m.Attempt > 0 {
		h.Set(HeaderAttempt, strconv.Itoa(m.Attempt))
	}
	if !m.FirstFailure.IsZero() {
		h.Set(HeaderFirstFailure, m.FirstFailure.UTC().Format(time.RFC3339Nano))
	}
	return h
}

// Decode reads a work message from NATS headers.
func Decode(h nats.Header) (work.Message, error) {
	m := work.Message{
		Kind:             h.Get(HeaderKind),
		SourceID:         h.Get(HeaderSourceID),
		ApplicationID:    h.Get(HeaderApplicationID),
		AuthenticationID: h.Get(HeaderAuthenticationID),
		Tenant:           event.Tenant{OrgID: h.Get(HeaderOrgID), AccountNumber: h.Get(HeaderAccount)},
		Identity:         h.Get(HeaderIdentity),
		Origin:           h.Get(HeaderOrigin),
	}
	if err := m.Validate(); err != nil {
		return work.Message{}, err
	}
	if v := h.Get(HeaderAttempt); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return work.Message{}, fmt.Errorf("%w: invalid %s", work.ErrBadMessage, HeaderAttempt)
		}
		m.Attempt = n
	}
	if v := h.Get(HeaderFirstFailure); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return work.Message{}, fmt.Errorf("%w: invalid %s", work.ErrBadMessage, HeaderFirstFailure)
		}
		m.FirstFailure = t
	}
	return m, nil
}

// NewMsg is the work message m for publishing to its source's subject, with
// msgID as its JetStream message id: the one way a work message is built,
// so every publisher (the listener, parked retries, checks, replays,
// periodic reconciles) gets the stream's deduplication.
func NewMsg(m work.Message, msgID string) *nats.Msg {
	msg := &nats.Msg{Subject: work.Subject(m.SourceID), Header: Header(m)}
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	return msg
}

// Publish stores m on its source's work subject with m.Origin as the
// JetStream message id, so that publishers racing for the same work (the
// sweepers of several processors, repeated checks of one source) store it
// once. duplicate is true when the stream already held that id and dropped
// this copy.
func Publish(ctx context.Context, js jetstream.JetStream, m work.Message) (duplicate bool, err error) {
	ack, err := js.PublishMsg(ctx, NewMsg(m, m.Origin))
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}
