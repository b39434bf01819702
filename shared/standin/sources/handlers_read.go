package sources

import (
	"net/http"
	"slices"
	"strings"
)

func (s *Server) listSources(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var items []map[string]any
	s.store.read(func(st *state) {
		for _, v := range st.listSources(rc.tenant.id) {
			items = append(items, sourceJSON(v))
		}
	})
	writeCollection(w, r, items)
}

func (s *Server) getSource(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	v, err := findByID(s, r, "source", func(st *state, id int64) (*Source, bool) { return st.source(rc.tenant.id, id) }, Source.clone)
	writeFound(w, v, err, sourceJSON)
}

func (s *Server) listSourceApplications(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var items []map[string]any
	var ok bool
	s.store.read(func(st *state) {
		if _, ok = st.source(rc.tenant.id, id); !ok {
			return
		}
		for _, v := range st.listApps(rc.tenant.id, func(a *Application) bool { return a.SourceID == id }) {
			items = append(items, applicationJSON(v))
		}
	})
	if !ok {
		writeErr(w, notFound("source"))
		return
	}
	writeCollection(w, r, items)
}

func (s *Server) listSourceAuthentications(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	s.listResourceAuthentications(w, r, rc, resourceSource, func(st *state, id int64) bool {
		_, ok := st.source(rc.tenant.id, id)
		return ok
	})
}

func (s *Server) listApplications(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var items []map[string]any
	s.store.read(func(st *state) {
		for _, v := range st.listApps(rc.tenant.id, func(*Application) bool { return true }) {
			items = append(items, applicationJSON(v))
		}
	})
	writeCollection(w, r, items)
}

func (s *Server) getApplication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	v, err := findByID(s, r, "application", func(st *state, id int64) (*Application, bool) { return st.app(rc.tenant.id, id) }, Application.clone)
	writeFound(w, v, err, applicationJSON)
}

// listApplicationAuthentications lists the authentications whose resource is
// the application, as the real service does (not the links).
func (s *Server) listApplicationAuthentications(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	s.listResourceAuthentications(w, r, rc, resourceApplication, func(st *state, id int64) bool {
		_, ok := st.app(rc.tenant.id, id)
		return ok
	})
}

// listResourceAuthentications lists the authentications whose resource is
// the path's resource of type resourceType, or 404 when exists says it is
// not there.
func (s *Server) listResourceAuthentications(w http.ResponseWriter, r *http.Request, rc reqCtx, resourceType string, exists func(st *state, id int64) bool) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var items []map[string]any
	var ok bool
	s.store.read(func(st *state) {
		if ok = exists(st, id); !ok {
			return
		}
		for _, v := range st.listAuths(rc.tenant.id, func(a *Authentication) bool {
			return a.ResourceType == resourceType && a.ResourceID == id
		}) {
			items = append(items, authenticationJSON(v))
		}
	})
	if !ok {
		writeErr(w, notFound(strings.ToLower(resourceType)))
		return
	}
	writeCollection(w, r, items)
}

func (s *Server) listAuthentications(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var items []map[string]any
	s.store.read(func(st *state) {
		for _, v := range st.listAuths(rc.tenant.id, func(*Authentication) bool { return true }) {
			items = append(items, authenticationJSON(v))
		}
	})
	writeCollection(w, r, items)
}

func (s *Server) getAuthentication(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	v, err := s.findAuthentication(r, rc)
	writeFound(w, v, err, authenticationJSON)
}

func (s *Server) findAuthentication(r *http.Request, rc reqCtx) (Authentication, error) {
	return findByID(s, r, "authentication", func(st *state, id int64) (*Authentication, bool) { return st.auth(rc.tenant.id, id) }, Authentication.clone)
}

// findByID copies out of the store the resource the path's id names (get
// finds it under the store's lock, clone copies what it shares), or
// returns a 404 naming it.
func findByID[T any](s *Server, r *http.Request, name string, get func(st *state, id int64) (*T, bool), clone func(T) T) (T, error) {
	var v T
	id, err := pathID(r)
	if err != nil {
		return v, err
	}
	ok := false
	s.store.read(func(st *state) {
		var p *T
		if p, ok = get(st, id); ok {
			v = clone(*p)
		}
	})
	if !ok {
		return v, notFound(name)
	}
	return v, nil
}

// writeFound answers what findByID found, or its error.
func writeFound[T any](w http.ResponseWriter, v T, err error, render func(T) map[string]any) {
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, render(v))
}

// internalGetAuthentication is the only way to read a secret: it needs the
// PSK, and the password only comes back when asked for by name.
func (s *Server) internalGetAuthentication(w http.ResponseWriter, r *http.Request) {
	if !s.pskOK(r) {
		writeError(w, http.StatusUnauthorized, "Unauthorized Action: Missing or invalid PSK")
		return
	}
	s.tenanted(func(w http.ResponseWriter, r *http.Request, rc reqCtx) {
		v, err := s.findAuthentication(r, rc)
		if err != nil {
			writeErr(w, err)
			return
		}
		body := authenticationJSON(v)
		if slices.Contains(r.URL.Query()["expose_encrypted_attribute[]"], "password") {
			body["password"] = v.Password
		}
		writeJSON(w, http.StatusOK, body)
	})(w, r)
}

func (s *Server) listLinks(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	var items []map[string]any
	s.store.read(func(st *state) {
		for _, v := range st.listLinks(rc.tenant.id, func(*ApplicationAuthentication) bool { return true }) {
			items = append(items, linkJSON(v))
		}
	})
	writeCollection(w, r, items)
}

func (s *Server) getLink(w http.ResponseWriter, r *http.Request, rc reqCtx) {
	v, err := findByID(s, r, "application authentication", func(st *state, id int64) (*ApplicationAuthentication, bool) { return st.link(rc.tenant.id, id) },
		func(l ApplicationAuthentication) ApplicationAuthentication { return l })
	writeFound(w, v, err, linkJSON)
}

func (s *Server) listApplicationTypes(w http.ResponseWriter, r *http.Request) {
	items := make([]map[string]any, 0, len(applicationTypes))
	for _, at := range sortedTypes() {
		items = append(items, applicationTypeJSON(at))
	}
	writeCollection(w, r, items)
}

func sortedTypes() []ApplicationType {
	out := slices.Clone(applicationTypes)
	slices.SortFunc(out, func(a, b ApplicationType) int { return int(a.ID - b.ID) })
	return out
}

func (s *Server) getApplicationType(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	at, ok := applicationTypeByID(id)
	if !ok {
		writeErr(w, notFound("application type"))
		return
	}
	writeJSON(w, http.StatusOK, applicationTypeJSON(at))
}

func (s *Server) listSourceTypes(w http.ResponseWriter, r *http.Request) {
	st := slices.Clone(sourceTypes)
	slices.SortFunc(st, func(a, b SourceType) int { return int(a.ID - b.ID) })
	items := make([]map[string]any, 0, len(st))
	for _, v := range st {
		items = append(items, sourceTypeJSON(v))
	}
	writeCollection(w, r, items)
}
