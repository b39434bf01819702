package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Orgs of the workload: three tenants, so the events spread over the event
// topic's partitions (Sources keys them by org).
var orgs = []string{"7100001", "7100002", "7100003"}

// kind is what a role ARN deserves.
type kind string

const (
	kindTrusted  kind = "trusted"     // available, registered at RHSM
	kindDenied   kind = "denied"      // AssumeRole denied: CG3002
	kindWrongExt kind = "wrong-ext"   // the source sends the wrong external id: CG3002
	kindNoPolicy kind = "no-policy"   // GetCallerIdentity denied: CG3003
	kindBadARN   kind = "bad-arn"     // not an IAM role ARN with a 12-digit account: CG1004
	kindOther    kind = "other-team"  // a cost-management source: no status, no call
	deservedNone kind = "(no status)" // for reporting only
)

// role is one ARN a source is given, with what it deserves.
type role struct {
	Kind       kind
	Account    string // 12 digits, "" for a bad ARN
	ARN        string
	ExternalID string // what the source sends
}

// deserved is the status a verified source ends in: available (code ""),
// or unavailable with code.
type deserved struct {
	Status string
	Code   status.Code
}

func (r role) deserves() deserved {
	switch r.Kind {
	case kindTrusted:
		return deserved{Status: status.Available}
	case kindDenied, kindWrongExt:
		return deserved{status.Unavailable, status.CG3002}
	case kindNoPolicy:
		return deserved{status.Unavailable, status.CG3003}
	case kindBadARN:
		return deserved{status.Unavailable, status.CG1004}
	}
	return deserved{}
}

func (d deserved) String() string {
	if d.Status == status.Available || d.Status == "" {
		return d.Status
	}
	return d.Status + " " + string(d.Code)
}

// matches reports whether a status message carries this outcome.
func (d deserved) matches(st, errText string) bool {
	if st != d.Status {
		return false
	}
	if d.Status == status.Available {
		return errText == ""
	}
	return errText == d.Code.Text()
}

// source is the model of one source the workload created: what it was
// given, in order, and whether it was deleted.
type source struct {
	Org, Name            string
	ID, AppID, AuthID    string
	Epochs               []role // the ARNs it had, in order (index 0: at creation)
	Deleted              bool
	Created              bool // bulk_create succeeded
	RecreatedFromAccount string
}

// final is the role the source ends with.
func (s *source) final() role { return s.Epochs[len(s.Epochs)-1] }

// ours reports whether Cloudoreg owns the source (it has cloud-meter).
func (s *source) ours() bool { return s.Epochs[0].Kind != kindOther }

// op is one step of a lineage's script.
type op struct {
	After time.Duration // pause before the step
	Do    string        // create, patch, pause, unpause, delete, recreate, check
	Role  role          // for create, patch, recreate
}

// lineage is the life of one source (and of the source re-created with
// its ARN after it was deleted): its steps run in order.
type lineage struct {
	Org   string
	Name  string
	Steps []op
}

// plan is the whole workload of a scenario, derived from the seed.
type plan struct {
	Lineages []lineage
	Trust    sts.Trust
}

// planner hands out unique AWS accounts and builds the trust table.
type planner struct {
	r      *rand.Rand
	prefix int // scenario number, so accounts differ between scenarios
	next   int
	trust  sts.Trust
}

func (p *planner) account() string {
	p.next++
	return fmt.Sprintf("%02d%010d", p.prefix, p.next)
}

// role makes a fresh role of kind k (a new AWS account) and trusts it as k needs.
func (p *planner) role(k kind) role {
	acct := p.account()
	arn := fmt.Sprintf("arn:aws:iam::%s:role/chaos-%s", acct, k)
	r := role{Kind: k, Account: acct, ARN: arn, ExternalID: "chaos-ext-" + acct}
	switch k {
	case kindTrusted, kindOther:
		p.trust.Roles = append(p.trust.Roles, sts.Role{ARN: arn, ExternalID: r.ExternalID})
	case kindDenied:
		p.trust.Roles = append(p.trust.Roles, sts.Role{ARN: arn, AssumeRole: sts.Deny})
	case kindWrongExt:
		p.trust.Roles = append(p.trust.Roles, sts.Role{ARN: arn, ExternalID: "the-right-one-" + acct})
	case kindNoPolicy:
		p.trust.Roles = append(p.trust.Roles, sts.Role{ARN: arn, ExternalID: r.ExternalID, GetCallerIdentity: sts.Deny})
	case kindBadARN:
		r.Account = ""
		r.ARN = fmt.Sprintf("arn:aws:iam::%d:role/chaos-bad-arn", 1000+p.next)
	}
	return r
}

// pick draws a kind for a new source: mostly trusted, the rest spread over
// the failures a customer can cause.
func (p *planner) pick() kind {
	switch x := p.r.IntN(100); {
	case x < 55:
		return kindTrusted
	case x < 70:
		return kindDenied
	case x < 77:
		return kindWrongExt
	case x < 84:
		return kindNoPolicy
	case x < 95:
		return kindBadARN
	default:
		return kindOther
	}
}

// makePlan draws n lineages whose steps spread over about d.
func makePlan(r *rand.Rand, scenario, n int, d time.Duration) plan {
	p := &planner{r: r, prefix: scenario}
	gap := func(lo, hi float64) time.Duration {
		return time.Duration((lo + r.Float64()*(hi-lo)) * float64(d))
	}
	var ls []lineage
	for i := 0; i < n; i++ {
		l := lineage{Org: orgs[i%len(orgs)], Name: fmt.Sprintf("chaos-%d-%d", scenario, i)}
		first := p.role(p.pick())
		l.Steps = append(l.Steps, op{After: gap(0, 0.5), Do: "create", Role: first})
		if first.Kind == kindOther {
			if r.IntN(3) == 0 {
				l.Steps = append(l.Steps, op{After: gap(0.05, 0.2), Do: "delete"})
			}
			ls = append(ls, l)
			continue
		}
		current := first
		if r.IntN(100) < 30 { // the customer changes the ARN (fixes it, breaks it, moves account)
			next := p.role(p.pick())
			if next.Kind == kindOther {
				next = p.role(kindTrusted)
			}
			l.Steps = append(l.Steps, op{After: gap(0.02, 0.15), Do: "patch", Role: next})
			current = next
		}
		if r.IntN(100) < 20 { // pause, maybe change the ARN meanwhile, unpause
			l.Steps = append(l.Steps, op{After: gap(0.02, 0.1), Do: "pause"})
			if r.IntN(2) == 0 {
				next := p.role(kindTrusted)
				l.Steps = append(l.Steps, op{After: gap(0.01, 0.05), Do: "patch", Role: next})
				current = next
			}
			l.Steps = append(l.Steps, op{After: gap(0.02, 0.1), Do: "unpause"})
		}
		if r.IntN(100) < 10 {
			l.Steps = append(l.Steps, op{After: gap(0.01, 0.05), Do: "check"})
		}
		if r.IntN(100) < 20 { // delete, and sometimes re-create with the same ARN
			l.Steps = append(l.Steps, op{After: gap(0.02, 0.15), Do: "delete"})
			if r.IntN(2) == 0 {
				l.Steps = append(l.Steps, op{After: gap(0, 0.05), Do: "recreate", Role: current})
			}
		}
		ls = append(ls, l)
	}
	return plan{Lineages: ls, Trust: p.trust}
}

// driver runs a plan against the Sources stand-in's REST API, as the
// console would, and keeps the model of every source it made.
type driver struct {
	base   string
	client *http.Client
	// retryFor bounds how long a write keeps being retried while the
	// stand-in answers with an injected fault (nothing changed then).
	retryFor time.Duration

	mu      sync.Mutex
	sources []*source
	ops     int
}

func newDriver(base string) *driver {
	return &driver{base: base, client: &http.Client{Timeout: 120 * time.Second}, retryFor: 3 * time.Minute}
}

// run executes every lineage concurrently (steps of one lineage in order)
// and returns the first error.
func (d *driver) run(ctx context.Context, p plan) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(p.Lineages))
	for _, l := range p.Lineages {
		wg.Add(1)
		go func(l lineage) {
			defer wg.Done()
			if err := d.runLineage(ctx, l); err != nil {
				errs <- fmt.Errorf("%s: %w", l.Name, err)
			}
		}(l)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (d *driver) runLineage(ctx context.Context, l lineage) error {
	var cur *source
	for _, s := range l.Steps {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.After):
		}
		var err error
		switch s.Do {
		case "create":
			cur, err = d.create(ctx, l.Org, l.Name, s.Role, "")
		case "recreate":
			cur, err = d.create(ctx, l.Org, l.Name+"-re", s.Role, s.Role.Account)
		case "patch":
			err = d.patch(ctx, cur, s.Role)
		case "pause", "unpause":
			err = d.write(ctx, http.MethodPost, "/api/sources/v3.1/applications/"+cur.AppID+"/"+s.Do, l.Org, nil, http.StatusNoContent, nil)
		case "check":
			err = d.write(ctx, http.MethodPost, "/api/sources/v3.1/sources/"+cur.ID+"/check_availability", l.Org, nil, http.StatusAccepted, nil)
		case "delete":
			err = d.write(ctx, http.MethodDelete, "/api/sources/v3.1/sources/"+cur.ID, l.Org, nil, http.StatusNoContent, nil)
			if err == nil {
				d.mu.Lock()
				cur.Deleted = true
				d.mu.Unlock()
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.Do, err)
		}
		d.mu.Lock()
		d.ops++
		d.mu.Unlock()
	}
	return nil
}

// patch gives the source a new ARN and external id, as the customer does
// in the console, and records it in the model.
func (d *driver) patch(ctx context.Context, s *source, r role) error {
	err := d.write(ctx, http.MethodPatch, "/api/sources/v3.1/authentications/"+s.AuthID, s.Org, patchBody(r), http.StatusOK, nil)
	if err == nil {
		d.mu.Lock()
		s.Epochs = append(s.Epochs, r)
		d.mu.Unlock()
	}
	return err
}

func patchBody(r role) map[string]any {
	return map[string]any{"username": r.ARN, "extra": map[string]any{"external_id": r.ExternalID}}
}

// create makes a source with one application and its authentication in one
// bulk_create, as the console does.
func (d *driver) create(ctx context.Context, org, name string, r role, reusedAccount string) (*source, error) {
	appType, authType := "cloud-meter", "cloud-meter-arn"
	if r.Kind == kindOther {
		appType, authType = "cost-management", "arn"
	}
	body := map[string]any{
		"sources":      []any{map[string]any{"name": name, "source_type_name": "amazon"}},
		"applications": []any{map[string]any{"source_name": name, "application_type_name": appType}},
		"authentications": []any{map[string]any{
			"resource_type": "application", "resource_name": appType, "authtype": authType,
			"username": r.ARN, "extra": map[string]any{"external_id": r.ExternalID},
		}},
	}
	var out struct{ Sources, Applications, Authentications []struct{ ID string } }
	if err := d.write(ctx, http.MethodPost, "/api/sources/v3.1/bulk_create", org, body, http.StatusCreated, &out); err != nil {
		return nil, err
	}
	if len(out.Sources) != 1 || len(out.Applications) != 1 || len(out.Authentications) != 1 {
		return nil, fmt.Errorf("bulk_create answered %+v", out)
	}
	s := &source{
		Org: org, Name: name, ID: out.Sources[0].ID, AppID: out.Applications[0].ID, AuthID: out.Authentications[0].ID,
		Epochs: []role{r}, Created: true, RecreatedFromAccount: reusedAccount,
	}
	d.mu.Lock()
	d.sources = append(d.sources, s)
	d.mu.Unlock()
	return s, nil
}

// errInjected is a failure the stand-in's fault injector answered: the
// request changed nothing, so it is safe to send again.
var errInjected = errors.New("injected fault")

// write sends a change and retries it while the stand-in answers with an
// injected fault (the Sources 5xx scenario faults the whole REST API).
func (d *driver) write(ctx context.Context, method, path, org string, body any, want int, out any) error {
	deadline := time.Now().Add(d.retryFor)
	for {
		err := d.call(ctx, method, path, org, body, want, out)
		if !errors.Is(err, errInjected) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *driver) call(ctx context.Context, method, path, org string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-rh-sources-org-id", org)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		if resp.StatusCode >= 500 && strings.Contains(string(b), "injected fault") {
			return errInjected
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// model returns the sources made so far.
func (d *driver) model() []*source {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*source, len(d.sources))
	for i, s := range d.sources {
		c := *s
		c.Epochs = append([]role(nil), s.Epochs...)
		out[i] = &c
	}
	return out
}

func (d *driver) opCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ops
}
