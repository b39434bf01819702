// Package claims keeps each AWS account owned by at most one source, in a
// JetStream KV bucket. Compare-and-set on the account key makes two
// processors racing for one account (on different partitions) agree.
package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/natsconn"
)

// Bucket is the KV bucket of account claims.
const Bucket = "CLOUDOREG_ACCOUNTS"

// Store implements reconcile.Claims.
type Store struct{ kv jetstream.KeyValue }

// Open creates or updates the bucket.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Cloudoreg: AWS account -> owning source and org (account.<id>), source -> account and org (source.<id>)",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("declare KV %s: %w", Bucket, err)
	}
	return &Store{kv: kv}, nil
}

func accountKey(id string) string { return "account." + id }
func sourceKey(id string) string  { return "source." + id }

// sourceClaim is the value of source.<id>. Values written before the org
// was recorded there are the bare account id; their org is the account
// claim's.
type sourceClaim struct {
	AccountID string `json:"account_id"`
	OrgID     string `json:"org_id"`
}

// source reads the source's claim; found is false when it has none.
func (s *Store) source(ctx context.Context, sourceID string) (c sourceClaim, e jetstream.KeyValueEntry, found bool, err error) {
	e, err = s.kv.Get(ctx, sourceKey(sourceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, nil, false, nil
	}
	if err != nil {
		return c, nil, false, failure.Transient("claims", err)
	}
	if json.Unmarshal(e.Value(), &c) == nil {
		return c, e, true, nil
	}
	c.AccountID = string(e.Value())
	owner, err := s.kv.Get(ctx, accountKey(c.AccountID))
	var claim reconcile.Claim
	if err == nil && json.Unmarshal(owner.Value(), &claim) == nil && claim.SourceID == sourceID {
		c.OrgID = claim.OrgID
	} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, nil, false, failure.Transient("claims", err)
	}
	return c, e, true, nil
}

// ownedBy is reconcile.ErrOtherOrg unless orgID owns the claim (a claim of
// unknown org is anyone's).
func (c sourceClaim) ownedBy(orgID string) error {
	if c.OrgID != "" && c.OrgID != orgID {
		return reconcile.ErrOtherOrg
	}
	return nil
}

// Claim implements reconcile.Claims.
func (s *Store) Claim(ctx context.Context, c reconcile.Claim) error {
	held, heldEntry, found, err := s.source(ctx, c.SourceID)
	if err != nil {
		return err
	}
	if found {
		if err := held.ownedBy(c.OrgID); err != nil {
			return err
		}
	}
	value, err := json.Marshal(c)
	if err != nil {
		return err
	}
	for {
		entry, err := s.kv.Get(ctx, accountKey(c.AccountID))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.kv.Create(ctx, accountKey(c.AccountID), value)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // lost a race: read the winner
			}
		case err == nil:
			var owner reconcile.Claim
			if jerr := json.Unmarshal(entry.Value(), &owner); jerr == nil && owner.SourceID != c.SourceID {
				return &reconcile.ClaimedError{Owner: owner}
			} else if jerr == nil && owner.OrgID != "" && owner.OrgID != c.OrgID {
				return reconcile.ErrOtherOrg
			}
			_, err = s.kv.Update(ctx, accountKey(c.AccountID), value, entry.Revision())
			if natsconn.WrongRevision(err) {
				continue
			}
		}
		if err != nil {
			return failure.Transient("claims", err)
		}
		return s.moveSource(ctx, c, held, heldEntry)
	}
}

// moveSource points source -> account at the new account and frees the
// account the source held before, if it was another one.
func (s *Store) moveSource(ctx context.Context, c reconcile.Claim, held sourceClaim, heldEntry jetstream.KeyValueEntry) error {
	if heldEntry != nil && held.AccountID != c.AccountID {
		if err := s.releaseAccount(ctx, held.AccountID, c.SourceID); err != nil {
			return err
		}
	}
	value, err := json.Marshal(sourceClaim{AccountID: c.AccountID, OrgID: c.OrgID})
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, sourceKey(c.SourceID), value); err != nil {
		return failure.Transient("claims", err)
	}
	return nil
}

// Release implements reconcile.Claims.
func (s *Store) Release(ctx context.Context, orgID, sourceID string) error {
	held, entry, found, err := s.source(ctx, sourceID)
	if err != nil || !found {
		return err
	}
	if err := held.ownedBy(orgID); err != nil {
		return err
	}
	if err := s.releaseAccount(ctx, held.AccountID, sourceID); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, sourceKey(sourceID), jetstream.LastRevision(entry.Revision())); err != nil && !natsconn.WrongRevision(err) {
		return failure.Transient("claims", err)
	}
	return nil
}

// releaseAccount deletes the account's claim only if sourceID still owns it.
func (s *Store) releaseAccount(ctx context.Context, accountID, sourceID string) error {
	entry, err := s.kv.Get(ctx, accountKey(accountID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return failure.Transient("claims", err)
	}
	var owner reconcile.Claim
	if json.Unmarshal(entry.Value(), &owner) == nil && owner.SourceID != sourceID {
		return nil
	}
	err = s.kv.Delete(ctx, accountKey(accountID), jetstream.LastRevision(entry.Revision()))
	if err != nil && !natsconn.WrongRevision(err) {
		return failure.Transient("claims", err)
	}
	return nil
}

// Account implements reconcile.Claims.
func (s *Store) Account(ctx context.Context, orgID, sourceID string) (string, error) {
	held, _, found, err := s.source(ctx, sourceID)
	if err != nil || !found {
		return "", err
	}
	if err := held.ownedBy(orgID); err != nil {
		return "", err
	}
	return held.AccountID, nil
}

// Claimed implements periodic.Claimed. It reads the bucket in one
// streamed pass (a watcher's initial values) rather than one request per
// source: a sweep of 10,000 claims took minutes of round trips under load,
// and every processor sweeps every tick. An old bare-account source value
// takes its org from the account's claim, read in the same pass.
func (s *Store) Claimed(ctx context.Context) ([]reconcile.Claim, error) {
	w, err := s.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, failure.Transient("claims", err)
	}
	defer func() { _ = w.Stop() }()
	sources := map[string][]byte{}
	owners := map[string]reconcile.Claim{} // by AWS account
	for e := range w.Updates() {
		if e == nil {
			break // the initial values are all there
		}
		if id, ok := strings.CutPrefix(e.Key(), sourceKey("")); ok {
			sources[id] = e.Value()
		} else if id, ok := strings.CutPrefix(e.Key(), accountKey("")); ok {
			var owner reconcile.Claim
			if json.Unmarshal(e.Value(), &owner) == nil {
				owners[id] = owner
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]reconcile.Claim, 0, len(sources))
	for id, v := range sources {
		var c sourceClaim
		if json.Unmarshal(v, &c) != nil {
			c.AccountID = string(v)
			if owner, ok := owners[c.AccountID]; ok && owner.SourceID == id {
				c.OrgID = owner.OrgID
			}
		}
		out = append(out, reconcile.Claim{SourceID: id, AccountID: c.AccountID, OrgID: c.OrgID})
	}
	return out, nil
}
