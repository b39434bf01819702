package sources

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

type sourceRequest struct {
	Name                *string `json:"name"`
	UID                 *string `json:"uid"`
	SourceTypeID        flexID  `json:"source_type_id"`
	SourceTypeName      string  `json:"source_type_name"`
	AppCreationWorkflow string  `json:"app_creation_workflow"`
	AvailabilityStatus  string  `json:"availability_status"`
}

type applicationRequest struct {
	SourceID            flexID          `json:"source_id"`
	SourceName          string          `json:"source_name"`
	ApplicationTypeID   flexID          `json:"application_type_id"`
	ApplicationTypeName string          `json:"application_type_name"`
	Extra               json.RawMessage `json:"extra"`
}

type authenticationRequest struct {
	Name         string          `json:"name"`
	AuthType     string          `json:"authtype"`
	Username     string          `json:"username"`
	Password     string          `json:"password"`
	Extra        json.RawMessage `json:"extra"`
	ResourceType string          `json:"resource_type"`
	ResourceID   flexID          `json:"resource_id"`
	ResourceName string          `json:"resource_name"`
}

type bulkRequest struct {
	Sources         []sourceRequest         `json:"sources"`
	Applications    []applicationRequest    `json:"applications"`
	Endpoints       []json.RawMessage       `json:"endpoints"`
	Authentications []authenticationRequest `json:"authentications"`
}

func now() time.Time { return time.Now().UTC() }

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// buildSource validates a source request the way the real service does and
// returns the record to insert.
func buildSource(st *state, tid int64, req sourceRequest) (Source, error) {
	if req.Name == nil || strings.TrimSpace(*req.Name) == "" {
		return Source{}, badRequest("Validation failed: name cannot be empty")
	}
	if st.sourceNameTaken(tid, *req.Name) {
		return Source{}, badRequest("Validation failed: source name already exists in same tenant")
	}
	var (
		stype SourceType
		ok    bool
	)
	switch {
	case req.SourceTypeID != 0:
		stype, ok = sourceTypeByID(int64(req.SourceTypeID))
	case req.SourceTypeName != "":
		stype, ok = sourceTypeByName(req.SourceTypeName)
	default:
		return Source{}, badRequest("no source type present, need either [source_type_name] or [source_type_id]")
	}
	if !ok {
		return Source{}, badRequest("Validation failed: invalid source type")
	}
	workflow := req.AppCreationWorkflow
	if workflow == "" {
		workflow = "manual_configuration"
	}
	if workflow != "manual_configuration" && workflow != "account_authorization" {
		return Source{}, badRequest("Validation failed: invalid workflow specified")
	}
	status := req.AvailabilityStatus
	if status == "" {
		status = statusInProgress
	}
	if !validStatus(status) {
		return Source{}, badRequest("Validation failed: invalid status")
	}
	uid := newUID()
	if req.UID != nil && *req.UID != "" {
		uid = *req.UID
	}
	t := now()
	return Source{
		Name: *req.Name, UID: uid, SourceTypeID: stype.ID, AppCreationWorkflow: workflow,
		AvailabilityStatus: status, CreatedAt: t, UpdatedAt: t,
	}, nil
}

func validStatus(s string) bool {
	switch s {
	case statusAvailable, statusInProgress, statusPartiallyAvailable, statusUnavailable:
		return true
	}
	return false
}

func resolveApplicationType(req applicationRequest) (ApplicationType, error) {
	switch {
	case req.ApplicationTypeID != 0:
		at, ok := applicationTypeByID(int64(req.ApplicationTypeID))
		if !ok {
			return ApplicationType{}, badRequest("Validation failed: application type not found")
		}
		return at, nil
	case req.ApplicationTypeName != "":
		return applicationTypeByName(req.ApplicationTypeName)
	}
	return ApplicationType{}, badRequest("no application type present, need either [application_type_name] or [application_type_id]")
}

// buildApplication checks the type fits the source's type, as the real
// ApplicationTypeCompatibleWithSource does.
func buildApplication(src *Source, at ApplicationType, extra json.RawMessage) (Application, error) {
	stype, _ := sourceTypeByID(src.SourceTypeID)
	if !at.supports(stype.Name) {
		return Application{}, badRequest(fmt.Sprintf("Validation failed: source type %s is not compatible with this application type", stype.Name))
	}
	ex, err := objectOrEmpty(extra)
	if err != nil {
		return Application{}, err
	}
	t := now()
	return Application{
		SourceID: src.ID, ApplicationTypeID: at.ID, Extra: ex,
		AvailabilityStatus: statusInProgress, CreatedAt: t, UpdatedAt: t,
	}, nil
}

func buildAuthentication(req authenticationRequest, resourceType string, resourceID, sourceID int64) (Authentication, error) {
	ex, err := objectOrEmpty(req.Extra)
	if err != nil {
		return Authentication{}, err
	}
	t := now()
	return Authentication{
		SourceID: sourceID, ResourceType: resourceType, ResourceID: resourceID,
		Name: req.Name, AuthType: req.AuthType, Username: req.Username, Password: req.Password, Extra: ex,
		CreatedAt: t, UpdatedAt: t,
	}, nil
}

func newLink(appID, authID int64) ApplicationAuthentication {
	t := now()
	return ApplicationAuthentication{ApplicationID: appID, AuthenticationID: authID, CreatedAt: t, UpdatedAt: t}
}

// bulkCreate creates a source with its applications and authentications in
// one all-or-nothing step, then raises the events in the real service's
// order: sources, applications, links, authentications.
func (s *Server) bulkCreate(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var req bulkRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	var (
		src   Source
		apps  []Application
		auths []Authentication
		links []ApplicationAuthentication
	)
	err := s.store.update(func(st *state) error {
		tid := rc.tenant.id
		// The real service saves only the first source and links everything
		// to it, so anything but one source cannot work there either.
		if len(req.Sources) != 1 {
			return badRequest("bulk_create needs exactly one source")
		}
		if len(req.Endpoints) > 0 {
			return badRequest("endpoints are not supported by the Sources stand-in")
		}
		var err error
		if src, err = buildSource(st, tid, req.Sources[0]); err != nil {
			return err
		}

		// Validate everything before inserting anything.
		appTypes := make([]ApplicationType, len(req.Applications))
		seen := map[int64]bool{}
		for i, ar := range req.Applications {
			if ar.SourceName != src.Name {
				return badRequest("failed to link up all applications - check to make sure the names match up")
			}
			at, err := resolveApplicationType(ar)
			if err != nil {
				return err
			}
			if seen[at.ID] {
				return badRequest("Validation failed: application type already exists on the source")
			}
			seen[at.ID] = true
			if _, err := buildApplication(&src, at, ar.Extra); err != nil {
				return err
			}
			appTypes[i] = at
		}
		type target struct {
			resourceType      string
			existingID        int64 // an existing resource named by id
			existingSourceID  int64
			newAppTypeID      int64 // an application of this request, by type
			linkToApplication bool
		}
		targets := make([]target, len(req.Authentications))
		for i, ar := range req.Authentications {
			rt := strings.ToLower(ar.ResourceType)
			if rt != "source" && rt != "application" {
				return badRequest("failed to link authentication: no resource type present")
			}
			tg := target{resourceType: capitalize(rt), linkToApplication: rt == "application"}
			if id, err := strconv.ParseInt(ar.ResourceName, 10, 64); err == nil {
				if rt == "source" {
					if v, ok := st.source(tid, id); ok {
						tg.existingID, tg.existingSourceID = v.ID, v.ID
					}
				} else if v, ok := st.app(tid, id); ok {
					tg.existingID, tg.existingSourceID = v.ID, v.SourceID
				}
			}
			if tg.existingID == 0 && rt == "application" {
				at, err := applicationTypeByName(ar.ResourceName)
				if err != nil {
					return err
				}
				if !seen[at.ID] {
					return badRequest("failed to find application for authentication type " + at.Name)
				}
				tg.newAppTypeID = at.ID
			}
			if _, err := objectOrEmpty(ar.Extra); err != nil {
				return err
			}
			targets[i] = tg
		}

		t := rc.tenant
		src = *st.insertSource(t, src)
		appByType := map[int64]int64{}
		for i, ar := range req.Applications {
			a, _ := buildApplication(&src, appTypes[i], ar.Extra)
			a = *st.insertApp(t, a)
			appByType[a.ApplicationTypeID] = a.ID
			apps = append(apps, a.clone())
		}
		for i, ar := range req.Authentications {
			tg := targets[i]
			resourceID, sourceID := tg.existingID, tg.existingSourceID
			switch {
			case resourceID != 0:
			case tg.linkToApplication:
				resourceID, sourceID = appByType[tg.newAppTypeID], src.ID
			default:
				resourceID, sourceID = src.ID, src.ID
			}
			a, _ := buildAuthentication(ar, tg.resourceType, resourceID, sourceID)
			a = *st.insertAuth(t, a)
			auths = append(auths, a.clone())
			if tg.linkToApplication {
				links = append(links, *st.insertLink(t, newLink(resourceID, a.ID)))
			}
		}
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}

	evs := []outEvent{{evSourceCreate, src.event()}}
	appsJSON, authsJSON := []map[string]any{}, []map[string]any{}
	for _, a := range apps {
		evs = append(evs, outEvent{evAppCreate, a.event()})
		appsJSON = append(appsJSON, applicationJSON(a))
	}
	for _, l := range links {
		evs = append(evs, outEvent{evAppAuthCreate, l.event()})
	}
	for _, a := range auths {
		evs = append(evs, outEvent{evAuthCreate, a.event()})
		authsJSON = append(authsJSON, authenticationJSON(a))
	}
	resp := map[string]any{
		"sources": []map[string]any{sourceJSON(src)}, "applications": appsJSON,
		"endpoints": []map[string]any{}, "authentications": authsJSON,
	}
	s.log.WithFields(map[string]any{
		"org_id": rc.fwd.orgID, "source_id": src.ID, "applications": len(apps), "authentications": len(auths),
	}).Info("sources stand-in: bulk create")
	s.commit(w, rc, evs, http.StatusCreated, resp)
}

func (s *Server) createSource(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var req sourceRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	var src Source
	err := s.store.update(func(st *state) error {
		v, err := buildSource(st, rc.tenant.id, req)
		if err != nil {
			return err
		}
		src = st.insertSource(rc.tenant, v).clone()
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.commit(w, rc, []outEvent{{evSourceCreate, src.event()}}, http.StatusCreated, sourceJSON(src))
}

func (s *Server) createApplication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var req applicationRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	var app Application
	err := s.store.update(func(st *state) error {
		src, ok := st.source(rc.tenant.id, int64(req.SourceID))
		if !ok {
			return badRequest("Validation failed: source not found")
		}
		at, err := resolveApplicationType(req)
		if err != nil {
			return err
		}
		if st.sourceHasAppType(src.ID, at.ID) {
			return badRequest("Validation failed: application type already exists on the source")
		}
		v, err := buildApplication(src, at, req.Extra)
		if err != nil {
			return err
		}
		app = st.insertApp(rc.tenant, v).clone()
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.commit(w, rc, []outEvent{{evAppCreate, app.event()}}, http.StatusCreated, applicationJSON(app))
}

// createAuthentication also links an authentication of an application to it
// (so a single POST is enough to give an application credentials), raising
// ApplicationAuthentication.create after Authentication.create.
func (s *Server) createAuthentication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var req authenticationRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	var (
		auth Authentication
		link *ApplicationAuthentication
	)
	err := s.store.update(func(st *state) error {
		rt := capitalize(req.ResourceType)
		id := int64(req.ResourceID)
		var sourceID int64
		switch rt {
		case resourceSource:
			if _, ok := st.source(rc.tenant.id, id); !ok {
				return badRequest(fmt.Sprintf("resource not found with type [%s], id [%d]", rt, id))
			}
			sourceID = id
		case resourceApplication:
			app, ok := st.app(rc.tenant.id, id)
			if !ok {
				return badRequest(fmt.Sprintf("resource not found with type [%s], id [%d]", rt, id))
			}
			sourceID = app.SourceID
		default:
			return badRequest("bad resource type, supported types are [Application, Source]")
		}
		v, err := buildAuthentication(req, rt, id, sourceID)
		if err != nil {
			return err
		}
		auth = st.insertAuth(rc.tenant, v).clone()
		if rt == resourceApplication {
			l := *st.insertLink(rc.tenant, newLink(id, auth.ID))
			link = &l
		}
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	evs := []outEvent{{evAuthCreate, auth.event()}}
	if link != nil {
		evs = append(evs, outEvent{evAppAuthCreate, link.event()})
	}
	s.commit(w, rc, evs, http.StatusCreated, authenticationJSON(auth))
}

// createLink is the real service's way to link an existing authentication to
// an application. A link that exists already (e.g. made by POST
// /authentications above) is returned as is, without a second event, so a
// client written for the real service works unchanged against the stand-in.
func (s *Server) createLink(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var req struct {
		ApplicationID    flexID `json:"application_id"`
		AuthenticationID flexID `json:"authentication_id"`
	}
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	var (
		link    ApplicationAuthentication
		created bool
	)
	err := s.store.update(func(st *state) error {
		appID, authID := int64(req.ApplicationID), int64(req.AuthenticationID)
		if _, ok := st.app(rc.tenant.id, appID); !ok {
			return badRequest("Validation failed: application not found")
		}
		if _, ok := st.auth(rc.tenant.id, authID); !ok {
			return badRequest("Validation failed: authentication not found")
		}
		for _, l := range st.links {
			if l.ApplicationID == appID && l.AuthenticationID == authID {
				link = *l
				return nil
			}
		}
		link, created = *st.insertLink(rc.tenant, newLink(appID, authID)), true
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	var evs []outEvent
	if created {
		evs = append(evs, outEvent{evAppAuthCreate, link.event()})
	}
	s.commit(w, rc, evs, http.StatusCreated, linkJSON(link))
}
