package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestDeletePaths: each way a customer takes a credential away, through the
// Sources REST API as the console does it. Afterwards RHSM holds nothing for
// the source, and the application reads unavailable with no error text
// (cloudigrade's delete notice) or is gone with the source.
func TestDeletePaths(t *testing.T) {
	cases := []struct {
		name string
		// remove deletes something of c through the REST API.
		remove func(h *harness, c created)
		// appGone: the application goes with it (nothing to report on).
		appGone bool
	}{
		// Sources emits only Authentication.destroy; the link goes by cascade.
		{"authentication", func(h *harness, c created) {
			h.rest(http.MethodDelete, "/api/sources/v3.1/authentications/"+c.AuthID, orgA, nil, http.StatusNoContent, nil)
		}, false},
		// Sources emits ApplicationAuthentication.destroy, yet the
		// authentication stays listed under the application.
		{"link", func(h *harness, c created) {
			link := h.linkOf(c.AppID)
			h.rest(http.MethodDelete, "/api/sources/v3.1/application_authentications/"+link, orgA, nil, http.StatusNoContent, nil)
			var listed struct{ Data []struct{ ID string } }
			h.rest(http.MethodGet, "/api/sources/v3.1/applications/"+c.AppID+"/authentications", orgA, nil, http.StatusOK, &listed)
			if len(listed.Data) != 1 || listed.Data[0].ID != c.AuthID {
				t.Fatalf("the stand-in no longer lists the detached authentication as Sources does: %+v", listed.Data)
			}
		}, false},
		{"source", func(h *harness, c created) {
			h.rest(http.MethodDelete, "/api/sources/v3.1/sources/"+c.SourceID, orgA, nil, http.StatusNoContent, nil)
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, options{})
			c := h.createSource(sourceSpec{org: orgA, name: "deleted-" + tc.name, arn: roleTrusted, externalID: demoExternal})
			if app := h.awaitStatus(c.AppID); app.AvailabilityStatus != status.Available {
				t.Fatalf("before the delete: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
			}
			if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + c.SourceID}) {
				t.Fatalf("RHSM holds %v before the delete", regs)
			}
			tc.remove(h, c)
			if tc.appGone {
				h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["state"] == "removed" })
				h.awaitSources("the application is gone", func(s sources.Snapshot) bool {
					_, ok := s.Applications[c.AppID]
					return !ok
				})
				if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available "}) {
					t.Errorf("the deleted application got %v, want nothing after its delete", got)
				}
			} else {
				// The status comes only after the registration is gone.
				app := h.awaitApp(c.AppID, "read unavailable", func(a sourcesApp) bool { return a.AvailabilityStatus == status.Unavailable })
				if app.AvailabilityStatusError != "" {
					t.Errorf("error text %q, want none", app.AvailabilityStatusError)
				}
				if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available ", "unavailable "}) {
					t.Errorf("statuses %v", got)
				}
			}
			if regs := h.registrations(orgA); len(regs) != 0 {
				t.Errorf("RHSM still holds %v after the delete", regs)
			}
			if dl := h.deadLetters(); len(dl) != 0 {
				t.Errorf("dead letters %v", dl)
			}
		})
	}
}

// TestGoneCredentialEachCheckReports: while the application remains without
// a credential, every availability check reports it again (Sources relies
// on a status per check for last_checked_at), and nothing is registered.
func TestGoneCredentialEachCheckReports(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "checked-after-delete", arn: roleOpen})
	h.awaitStatus(c.AppID)
	h.rest(http.MethodDelete, "/api/sources/v3.1/authentications/"+c.AuthID, orgA, nil, http.StatusNoContent, nil)
	for n := 2; n <= 3; n++ {
		if n > 2 {
			h.rest(http.MethodPost, "/api/sources/v3.1/sources/"+c.SourceID+"/check_availability", orgA, nil, http.StatusAccepted, nil)
		}
		h.awaitSources(fmt.Sprintf("got %d status messages", n), func(s sources.Snapshot) bool { return len(statusesOf(s.StatusLog, c.AppID)) >= n })
		if got := h.statuses(c.AppID); got[n-1] != "unavailable " {
			t.Fatalf("statuses %v", got)
		}
		if regs := h.registrations(orgA); len(regs) != 0 {
			t.Fatalf("RHSM holds %v", regs)
		}
	}
}

// linkOf is the id of the application's one link, read from the link table.
func (h *harness) linkOf(appID string) string {
	h.t.Helper()
	var links struct{ Data []struct{ ID string } }
	h.rest(http.MethodGet, "/api/sources/v3.1/application_authentications?filter[application_id]="+appID, orgA, nil, http.StatusOK, &links)
	if len(links.Data) != 1 {
		h.t.Fatalf("application %s has links %+v, want one", appID, links.Data)
	}
	return links.Data[0].ID
}

// awaitSources waits until the Sources stand-in's state satisfies pred.
func (h *harness) awaitSources(what string, pred func(sources.Snapshot) bool) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, waitLimit)
	defer cancel()
	if err := h.stack.Sources.Await(ctx, pred); err != nil {
		h.t.Fatalf("never %s", what)
	}
}
