package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/rhsm"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi"
	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi/apitest"
	"github.com/cloudoreg/cloudoreg/processor/internal/worker"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// openAPIDoc is the part of an OpenAPI 3.1 document the check reads.
type openAPIDoc struct {
	Paths map[string]map[string]struct {
		Responses map[string]struct {
			Content map[string]struct {
				Schema *schema `json:"schema"`
			} `json:"content"`
		} `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Ref        string             `json:"$ref"`
	Type       string             `json:"type"`
	Format     string             `json:"format"`
	Required   []string           `json:"required"`
	Properties map[string]*schema `json:"properties"`
	Items      *schema            `json:"items"`
	OneOf      []*schema          `json:"oneOf"`
	// AdditionalProperties false: a field the document lacks is an error.
	AdditionalProperties *bool `json:"additionalProperties"`
}

// checker validates JSON values against the document's schemas and notes
// which properties of which schema it saw, so that a documented field no
// handler produces fails the test too.
type checker struct {
	doc  openAPIDoc
	seen map[string]bool // "Schema.property"
}

func (c *checker) validate(s *schema, v any, where string) []string {
	name := ""
	if s.Ref != "" {
		name = strings.TrimPrefix(s.Ref, "#/components/schemas/")
		s = c.doc.Components.Schemas[name]
		if s == nil {
			return []string{where + ": unknown schema " + name}
		}
	}
	if len(s.OneOf) > 0 {
		var all []string
		for _, alt := range s.OneOf {
			errs := c.validate(alt, v, where)
			if len(errs) == 0 {
				return nil
			}
			all = append(all, errs...)
		}
		return []string{fmt.Sprintf("%s: matches no alternative: %v", where, all)}
	}
	switch s.Type {
	case "null":
		if v != nil {
			return []string{where + ": not null"}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: %v is not a string", where, v)}
		}
		if _, err := time.Parse(time.RFC3339Nano, str); s.Format == "date-time" && err != nil {
			return []string{fmt.Sprintf("%s: %q is not a date-time", where, str)}
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			return []string{fmt.Sprintf("%s: %v is not an integer", where, v)}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: %v is not a boolean", where, v)}
		}
	case "array":
		list, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v is not an array", where, v)}
		}
		var errs []string
		for i, item := range list {
			errs = append(errs, c.validate(s.Items, item, fmt.Sprintf("%s[%d]", where, i))...)
		}
		return errs
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %v is not an object", where, v)}
		}
		return c.validateObject(name, s, obj, where)
	default:
		return []string{fmt.Sprintf("%s: the check knows no type %q", where, s.Type)}
	}
	return nil
}

func (c *checker) validateObject(name string, s *schema, obj map[string]any, where string) []string {
	var errs []string
	for _, r := range s.Required {
		if _, ok := obj[r]; !ok {
			errs = append(errs, fmt.Sprintf("%s: required field %q missing", where, r))
		}
	}
	for k, val := range obj {
		ps, ok := s.Properties[k]
		if !ok {
			if s.AdditionalProperties != nil && !*s.AdditionalProperties {
				errs = append(errs, fmt.Sprintf("%s: field %q is not in the document", where, k))
			}
			continue
		}
		if name != "" {
			c.seen[name+"."+k] = true
		}
		errs = append(errs, c.validate(ps, val, where+"."+k)...)
	}
	return errs
}

// apiCall is one request of the check and the operation it exercises.
type apiCall struct {
	route string // "METHOD /path/{template}" as in the document
	path  string // the concrete path and query
	who   map[string]string
	want  int
}

// TestOpenAPIDocumentMatchesHandlers walks the OpenAPI document: every
// operation and every response it documents is produced by a request, each
// answer matches its schema (types, required fields, no undocumented
// field), every documented field is produced at least once, and the
// handlers register exactly the documented routes.
func TestOpenAPIDocumentMatchesHandlers(t *testing.T) {
	c := &checker{seen: map[string]bool{}}
	if err := json.Unmarshal(statusapi.OpenAPI(), &c.doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	e := apitest.Start(t, adminToken)
	documented := map[string]bool{}
	for path, ops := range c.doc.Paths {
		for method, op := range ops {
			route := strings.ToUpper(method) + " " + path
			documented[route] = true
			for code := range op.Responses {
				documented[route+" "+code] = true
			}
		}
	}
	var routes []string
	for r := range documented {
		if strings.Count(r, " ") == 1 {
			routes = append(routes, r)
		}
	}
	sort.Strings(routes)
	registered := slices.Sorted(slices.Values(e.Routes))
	if !slices.Equal(routes, registered) {
		t.Errorf("the document's routes %v, the handlers' %v", routes, registered)
	}

	seed(e)
	exercised := map[string]bool{}
	check := func(calls []apiCall) {
		for _, call := range calls {
			method := strings.Fields(call.route)[0]
			code, body := e.Do(method, call.path, call.who)
			key := call.route + " " + strconv.Itoa(code)
			exercised[key] = true
			if code != call.want {
				t.Errorf("%s %s: HTTP %d, want %d: %s", method, call.path, code, call.want, body)
			}
			if !documented[key] {
				t.Errorf("%s: status %d is not in the document", call.route, code)
				continue
			}
			c.checkBody(t, call.route, code, body)
		}
	}
	check(workingCalls())
	// RHSM failing is part of a 200.
	e.RHSM.Fail(true)
	check([]apiCall{{"GET " + v1 + "/sources/{id}", v1Sources + "/101", asOrgA, 200}})
	breakBackends(t, e)
	check(failingCalls())
	for key := range documented {
		if strings.Count(key, " ") == 2 && !exercised[key] {
			t.Errorf("documented but never answered: %s", key)
		}
	}
	for name, s := range c.doc.Components.Schemas {
		for prop := range s.Properties {
			if !c.seen[name+"."+prop] {
				t.Errorf("schema %s: field %q is documented but no answer had it", name, prop)
			}
		}
	}
}

func (c *checker) checkBody(t *testing.T, route string, code int, body []byte) {
	t.Helper()
	fields := strings.Fields(route)
	op := c.doc.Paths[fields[1]][strings.ToLower(fields[0])]
	content, ok := op.Responses[strconv.Itoa(code)].Content["application/json"]
	if !ok || content.Schema == nil {
		t.Errorf("%s %d: no JSON schema in the document", route, code)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %d: not JSON: %s", route, code, body)
		return
	}
	for _, err := range c.validate(content.Schema, v, fmt.Sprintf("%s %d", route, code)) {
		t.Error(err)
	}
}

// seed gives every field of every answer something to show.
func seed(e *apitest.Env) {
	now := time.Now().UTC()
	e.PutOutcome("101", outcomes.Record{
		OrgID: orgA, State: "unavailable", Code: "CG3000", Reason: "retry budget spent", ApplicationID: "201",
		AccountID: "123456789012", Attempts: 9, LastEvent: "ApplicationAuthentication.create", Origin: "t/0/1", Time: now,
	})
	e.Park("101", orgA, 9, now.Add(time.Minute), now.Add(-time.Hour))
	e.PutOutcome("102", outcomes.Record{OrgID: orgB, State: "available", LastEvent: "Source.create", Time: now})
	e.RHSM.Register(orgA, rhsm.Account{ID: "123456789012", SourceID: "101", Verified: true})
	for i := range 3 {
		e.DeadLetter(apitest.Message(fmt.Sprint(300+i), orgA), "budget_spent", uint64(i+1))
	}
	e.DeadLetter(work.Message{SourceID: "309", Tenant: apitest.Message("309", orgA).Tenant}, "undecodable", 9) // seq 4
}

const v1Sources, v1DLQ = v1 + "/sources", v1 + "/dead-letters"

func workingCalls() []apiCall {
	src, rec := "GET "+v1+"/sources/{id}", "POST "+v1+"/sources/{id}/reconcile"
	list, purge := "GET "+v1+"/dead-letters", "DELETE "+v1+"/dead-letters"
	show, replay, parked := "GET "+v1+"/dead-letters/{seq}", "POST "+v1+"/dead-letters/{seq}/replay", "GET "+v1+"/parked"
	return []apiCall{
		{"GET " + statusapi.OpenAPIPath, statusapi.OpenAPIPath, nil, 200},
		{src, v1Sources + "/101", asOrgA, 200},
		{src, v1Sources + "/102", asAdmin, 200},
		{src, v1Sources + "/x", asOrgA, 400},
		{src, v1Sources + "/102", asOrgA, 404},
		{src, v1Sources + "/101", nil, 401},
		{rec, v1Sources + "/101/reconcile", asAdmin, 202},
		{rec, v1Sources + "/x/reconcile", asAdmin, 400},
		{rec, v1Sources + "/999/reconcile", asAdmin, 404},
		{rec, v1Sources + "/101/reconcile", nil, 401},
		{rec, v1Sources + "/101/reconcile", asOrgA, 403},
		{list, v1DLQ + "?limit=2", asAdmin, 200},
		{list, v1DLQ + "?limit=0", asAdmin, 400},
		{list, v1DLQ, nil, 401},
		{list, v1DLQ, asOrgA, 403},
		{show, v1DLQ + "/1", asAdmin, 200},
		{show, v1DLQ + "/x", asAdmin, 400},
		{show, v1DLQ + "/99", asAdmin, 404},
		{show, v1DLQ + "/1", nil, 401},
		{show, v1DLQ + "/1", asOrgA, 403},
		{replay, v1DLQ + "/1/replay", asAdmin, 200},
		{replay, v1DLQ + "/x/replay", asAdmin, 400},
		{replay, v1DLQ + "/1/replay", asAdmin, 404},
		{replay, v1DLQ + "/4/replay", asAdmin, 422},
		{replay, v1DLQ + "/2/replay", nil, 401},
		{replay, v1DLQ + "/2/replay", asOrgA, 403},
		{parked, v1 + "/parked", asAdmin, 200},
		{parked, v1 + "/parked", nil, 401},
		{parked, v1 + "/parked", asOrgA, 403},
		{purge, v1DLQ + "?older_than=x", asAdmin, 400},
		{purge, v1DLQ + "?older_than=1h", nil, 401},
		{purge, v1DLQ + "?older_than=1h", asOrgA, 403},
		{purge, v1DLQ + "?older_than=0s", asAdmin, 200},
	}
}

// breakBackends removes what the API reads: every route that reads
// JetStream then answers 503.
func breakBackends(t *testing.T, e *apitest.Env) {
	t.Helper()
	ctx := context.Background()
	for _, del := range []func() error{
		func() error { return e.JS.DeleteStream(ctx, work.StreamName) },
		func() error { return e.JS.DeleteStream(ctx, work.DLQStreamName) },
		func() error { return e.JS.DeleteKeyValue(ctx, outcomes.Bucket) },
		func() error { return e.JS.DeleteKeyValue(ctx, worker.ParkedBucket) },
	} {
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
}

func failingCalls() []apiCall {
	const id = "101"
	return []apiCall{
		{"GET " + v1 + "/sources/{id}", v1Sources + "/" + id, asOrgA, 503},
		{"POST " + v1 + "/sources/{id}/reconcile", v1Sources + "/" + id + "/reconcile?org_id=" + orgA, asAdmin, 503},
		{"GET " + v1 + "/dead-letters", v1DLQ, asAdmin, 503},
		{"DELETE " + v1 + "/dead-letters", v1DLQ + "?older_than=1h", asAdmin, 503},
		{"GET " + v1 + "/dead-letters/{seq}", v1DLQ + "/2", asAdmin, 503},
		{"POST " + v1 + "/dead-letters/{seq}/replay", v1DLQ + "/2/replay", asAdmin, 503},
		{"GET " + v1 + "/parked", v1 + "/parked", asAdmin, 503},
	}
}
