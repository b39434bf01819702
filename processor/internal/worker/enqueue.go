package worker

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Enqueue publishes m to its source's work subject with m.Origin as the
// JetStream message id, so that publishers racing for the same work
// (the sweepers of several processors, repeated checks of one source) store
// it once. duplicate is true when the stream already held that id and
// dropped this copy.
func Enqueue(ctx context.Context, js jetstream.JetStream, m work.Message) (duplicate bool, err error) {
	msg := &nats.Msg{Subject: work.Subject(m.SourceID), Header: m.Header()}
	msg.Header.Set(jetstream.MsgIDHeader, m.Origin)
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}
