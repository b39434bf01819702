package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
)

// patchAuthentication changes credentials (e.g. a new ARN or external id)
// and raises Authentication.update.
func (s *Server) patchAuthentication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var req struct {
		Name     *string         `json:"name"`
		AuthType *string         `json:"authtype"`
		Username *string         `json:"username"`
		Password *string         `json:"password"`
		Extra    json.RawMessage `json:"extra"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	var auth Authentication
	err = s.store.update(func(st *state) error {
		a, ok := st.auth(rc.tenant.id, id)
		if !ok {
			return notFound("authentication")
		}
		var extra json.RawMessage
		if req.Extra != nil {
			var err error
			if extra, err = objectOrEmpty(req.Extra); err != nil {
				return err
			}
		}
		if req.Name != nil {
			a.Name = *req.Name
		}
		if req.AuthType != nil {
			a.AuthType = *req.AuthType
		}
		if req.Username != nil {
			a.Username = *req.Username
		}
		if req.Password != nil {
			a.Password = *req.Password
		}
		if extra != nil {
			a.Extra = extra
		}
		a.UpdatedAt = now()
		auth = a.clone()
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.commit(w, rc, []outEvent{{evAuthUpdate, auth.event()}}, http.StatusOK, authenticationJSON(auth))
}

// pauseApplication sets or clears paused_at and raises Application.pause or
// Application.unpause; the real service raises nothing for the source here.
func (s *Server) pauseApplication(pause bool) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, rc reqCtx) {
		id, err := pathID(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		var app Application
		err = s.store.update(func(st *state) error {
			a, ok := st.app(rc.tenant.id, id)
			if !ok {
				return notFound("application")
			}
			setPaused(&a.PausedAt, pause)
			app = a.clone()
			return nil
		})
		if err != nil {
			writeErr(w, err)
			return
		}
		evType := evAppUnpause
		if pause {
			evType = evAppPause
		}
		s.commit(w, rc, []outEvent{{evType, app.event()}}, http.StatusNoContent, nil)
	}
}

func setPaused(p **time.Time, pause bool) {
	if !pause {
		*p = nil
		return
	}
	t := now()
	*p = &t
}

// pauseSource pauses or resumes a source and all its applications, raising
// Source.pause then Application.pause for each application, as the real
// service does.
func (s *Server) pauseSource(pause bool) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, rc reqCtx) {
		id, err := pathID(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		var (
			src  Source
			apps []Application
		)
		err = s.store.update(func(st *state) error {
			v, ok := st.source(rc.tenant.id, id)
			if !ok {
				return notFound("source")
			}
			setPaused(&v.PausedAt, pause)
			src = v.clone()
			for _, aid := range sortedKeys(st.apps) {
				if a := st.apps[aid]; a.SourceID == id {
					setPaused(&a.PausedAt, pause)
					apps = append(apps, a.clone())
				}
			}
			return nil
		})
		if err != nil {
			writeErr(w, err)
			return
		}
		srcType, appType := evSourceUnpause, evAppUnpause
		if pause {
			srcType, appType = evSourcePause, evAppPause
		}
		evs := []outEvent{{srcType, src.event()}}
		for _, a := range apps {
			evs = append(evs, outEvent{appType, a.event()})
		}
		s.commit(w, rc, evs, http.StatusNoContent, nil)
	}
}

// remove deletes what the path's id names with del, in one update of the
// store, then raises the destroy events of everything del removed.
func (s *Server) remove(w http.ResponseWriter, r *http.Request, rc reqCtx, del func(st *state, id int64, gone *removed) error) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var gone removed
	if err := s.store.update(func(st *state) error { return del(st, id, &gone) }); err != nil {
		writeErr(w, err)
		return
	}
	s.commit(w, rc, gone.destroyEvents(), http.StatusNoContent, nil)
}

// deleteSource removes everything first and raises the destroy events after,
// so a consumer that reacts to them already gets 404 from REST.
func (s *Server) deleteSource(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	s.remove(w, r, rc, func(st *state, id int64, gone *removed) error {
		src, ok := st.source(rc.tenant.id, id)
		if !ok {
			return notFound("source")
		}
		var appIDs []int64
		for _, aid := range sortedKeys(st.apps) {
			if st.apps[aid].SourceID == id {
				appIDs = append(appIDs, aid)
			}
		}
		st.removeApps(rc.tenant.id, appIDs, gone)
		gone.sources = append(gone.sources, src.clone())
		delete(st.sources, id)
		st.removeAuths(rc.tenant.id, func(a *Authentication) bool {
			return a.SourceID == id || (a.ResourceType == resourceSource && a.ResourceID == id)
		}, gone)
		return nil
	})
}

func (s *Server) deleteApplication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	s.remove(w, r, rc, func(st *state, id int64, gone *removed) error {
		if _, ok := st.app(rc.tenant.id, id); !ok {
			return notFound("application")
		}
		st.removeApps(rc.tenant.id, []int64{id}, gone)
		return nil
	})
}

// deleteAuthentication raises only Authentication.destroy: in the real
// service the links disappear by the database's cascade, without events.
func (s *Server) deleteAuthentication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	s.remove(w, r, rc, func(st *state, id int64, gone *removed) error {
		if _, ok := st.auth(rc.tenant.id, id); !ok {
			return notFound("authentication")
		}
		st.removeAuths(rc.tenant.id, func(a *Authentication) bool { return a.ID == id }, gone)
		return nil
	})
}

// deleteLink removes only the link and raises only
// ApplicationAuthentication.destroy. The authentication stays, and so does
// its resource_type/resource_id, so GET /applications/{id}/authentications
// still lists it: only the link table tells that it is no longer attached.
func (s *Server) deleteLink(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	s.remove(w, r, rc, func(st *state, id int64, gone *removed) error {
		l, ok := st.link(rc.tenant.id, id)
		if !ok {
			return notFound("application authentication")
		}
		gone.links = append(gone.links, *l)
		delete(st.links, id)
		return nil
	})
}

// availabilityTimeout is how long the real service waits for an application
// to answer an availability check request.
const availabilityTimeout = 10 * time.Second

// checkAvailability asks each application of the source whose type has a
// check URL to re-check, in the background like the real service, and
// answers 202 at once. The answer is only logged.
func (s *Server) checkAvailability(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var (
		ok   bool
		apps []Application
	)
	s.store.read(func(st *state) {
		if _, ok = st.source(rc.tenant.id, id); ok {
			apps = st.listApps(rc.tenant.id, func(a *Application) bool { return a.SourceID == id })
		}
	})
	if !ok {
		writeErr(w, notFound("source"))
		return
	}
	for _, app := range apps {
		at, _ := applicationTypeByID(app.ApplicationTypeID)
		url := s.availabilityURL(at)
		if url == "" {
			continue
		}
		if !s.spawn(func() { s.requestAvailabilityCheck(url, app, rc) }) {
			writeError(w, http.StatusServiceUnavailable, "the Sources stand-in is shutting down")
			return
		}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{})
}

func (s *Server) availabilityURL(at ApplicationType) string {
	if at.Name == cloudMeterTypeName {
		return s.cfg.AvailabilityCheckURL
	}
	return ""
}

func (s *Server) requestAvailabilityCheck(url string, app Application, rc reqCtx) {
	log := s.log.WithFields(map[string]any{"source_id": app.SourceID, "application_id": app.ID, "url": url})
	ctx, cancel := context.WithTimeout(s.bgCtx, availabilityTimeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"source_id": idString(app.SourceID)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		log.WithError(err).Error("sources stand-in: availability check request")
		return
	}
	// The real service sets both tenant headers, even when one is empty.
	req.Header.Set(event.HeaderIdentity, rc.fwd.identity)
	req.Header.Set(event.HeaderOrgID, rc.tenant.orgID)
	req.Header.Set(event.HeaderAccount, rc.tenant.account)
	req.Header.Set("Content-Type", "application/json;charset=utf-8")
	resp, err := s.httpClient.Do(req)
	if err != nil {
		log.WithError(err).Error("sources stand-in: availability check failed")
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	entry := log.WithFields(map[string]any{"status": resp.StatusCode, "body": string(answer)})
	if resp.StatusCode/100 != 2 {
		entry.Error("sources stand-in: bad answer to availability check")
		return
	}
	entry.Info("sources stand-in: availability check requested")
}
