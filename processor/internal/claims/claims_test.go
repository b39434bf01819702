package claims

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"encoding/json"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

func open(t *testing.T) *Store {
	t.Helper()
	_, js := testkit.JetStream(t, testkit.NATSServer(t))
	s, err := Open(context.Background(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claim(source, account, arn string) reconcile.Claim {
	return reconcile.Claim{SourceID: source, AccountID: account, ARN: arn, OrgID: "o" + source}
}

func account(t *testing.T, s *Store, source string) string {
	t.Helper()
	a, err := s.Account(context.Background(), "o"+source, source)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestClaimMoveRelease(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if err := s.Claim(ctx, claim("1", "111111111111", "arn:a")); err != nil {
		t.Fatal(err)
	}
	// Claiming again is idempotent.
	if err := s.Claim(ctx, claim("1", "111111111111", "arn:a")); err != nil {
		t.Fatalf("reclaim: %v", err)
	}
	var claimed *reconcile.ClaimedError
	err := s.Claim(ctx, claim("2", "111111111111", "arn:b"))
	if !errors.As(err, &claimed) || claimed.Owner.SourceID != "1" || claimed.Owner.ARN != "arn:a" || claimed.Owner.OrgID != "o1" {
		t.Fatalf("another source claiming the account: %v", err)
	}
	// Moving source 1 to another account frees the first one.
	if err := s.Claim(ctx, claim("1", "222222222222", "arn:c")); err != nil {
		t.Fatal(err)
	}
	if a := account(t, s, "1"); a != "222222222222" {
		t.Fatalf("source 1 owns %q", a)
	}
	if err := s.Claim(ctx, claim("2", "111111111111", "arn:b")); err != nil {
		t.Fatalf("the freed account: %v", err)
	}
	// Release drops only what the source owns.
	if err := s.Release(ctx, "o1", "1"); err != nil {
		t.Fatal(err)
	}
	if a := account(t, s, "1"); a != "" {
		t.Fatalf("released source 1 still owns %q", a)
	}
	if a := account(t, s, "2"); a != "111111111111" {
		t.Fatalf("source 2 lost its account: %q", a)
	}
	if err := s.Release(ctx, "o1", "1"); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	if err := s.Claim(ctx, claim("3", "222222222222", "arn:d")); err != nil {
		t.Fatalf("account of a released source: %v", err)
	}
}

// TestRaceHasOneWinner: many processors claiming one account at once
// (sources on different partitions) end with exactly one owner.
func TestRaceHasOneWinner(t *testing.T) {
	s := open(t)
	const racers = 12
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.Claim(context.Background(), claim(strconv.Itoa(i+1), "333333333333", "arn:x"))
		}(i)
	}
	wg.Wait()
	winners := 0
	for i, err := range errs {
		var claimed *reconcile.ClaimedError
		switch {
		case err == nil:
			winners++
		case !errors.As(err, &claimed):
			t.Errorf("racer %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners, want 1", winners)
	}
}

// TestOnlyTheOwningOrgChangesAClaim: under another org, reading, releasing
// or re-claiming a source's claim returns ErrOtherOrg and changes nothing;
// claims written before the org was recorded with the source (the bare
// account id) are read with the org of their account claim.
func TestOnlyTheOwningOrgChangesAClaim(t *testing.T) {
	for name, write := range map[string]func(t *testing.T, s *Store){
		"current": func(t *testing.T, s *Store) {
			if err := s.Claim(context.Background(), claim("1", "111111111111", "arn:a")); err != nil {
				t.Fatal(err)
			}
		},
		"written before the org was recorded": func(t *testing.T, s *Store) {
			ctx := context.Background()
			if _, err := s.kv.Put(ctx, accountKey("111111111111"), []byte(`{"account_id":"111111111111","arn":"arn:a","source_id":"1","org_id":"o1"}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.kv.Put(ctx, sourceKey("1"), []byte("111111111111")); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			write(t, s)
			if _, err := s.Account(ctx, "o2", "1"); !errors.Is(err, reconcile.ErrOtherOrg) {
				t.Errorf("Account under another org: %v", err)
			}
			if err := s.Release(ctx, "o2", "1"); !errors.Is(err, reconcile.ErrOtherOrg) {
				t.Errorf("Release under another org: %v", err)
			}
			moved := reconcile.Claim{SourceID: "1", AccountID: "222222222222", ARN: "arn:b", OrgID: "o2"}
			if err := s.Claim(ctx, moved); !errors.Is(err, reconcile.ErrOtherOrg) {
				t.Errorf("Claim under another org: %v", err)
			}
			if a := account(t, s, "1"); a != "111111111111" {
				t.Fatalf("the owning org reads %q", a)
			}
			if err := s.Claim(ctx, claim("3", "222222222222", "arn:b")); err != nil {
				t.Errorf("the other org's claim attempt took the account: %v", err)
			}
			if err := s.Release(ctx, "o1", "1"); err != nil {
				t.Fatal(err)
			}
			if a := account(t, s, "1"); a != "" {
				t.Errorf("released by its org, source 1 still owns %q", a)
			}
			if err := s.Claim(ctx, claim("2", "111111111111", "arn:c")); err != nil {
				t.Errorf("the released account: %v", err)
			}
		})
	}
}

// TestClaimedListsEverySourceWithItsOrg: the periodic reconcile's view.
func TestClaimedListsEverySourceWithItsOrg(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if got, err := s.Claimed(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}
	for i, acct := range []string{"111111111111", "222222222222", "333333333333"} {
		if err := s.Claim(ctx, claim(strconv.Itoa(i+1), acct, "arn:"+acct)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Release(ctx, "o2", "2"); err != nil {
		t.Fatal(err)
	}
	// A source value of the old format (the bare account) takes its org
	// from the account's claim.
	owner, _ := json.Marshal(reconcile.Claim{AccountID: "444444444444", SourceID: "4", OrgID: "o4"})
	if _, err := s.kv.Put(ctx, accountKey("444444444444"), owner); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Put(ctx, sourceKey("4"), []byte("444444444444")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Claimed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"1": "111111111111/o1", "3": "333333333333/o3", "4": "444444444444/o4"}
	if len(got) != len(want) {
		t.Fatalf("claimed %v, want %v", got, want)
	}
	for _, c := range got {
		if want[c.SourceID] != c.AccountID+"/"+c.OrgID {
			t.Errorf("claimed %v, want %v", got, want)
		}
	}
}
