package sources

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Availability statuses the real service accepts on its status topic.
const (
	statusAvailable          = "available"
	statusInProgress         = "in_progress"
	statusPartiallyAvailable = "partially_available"
	statusUnavailable        = "unavailable"
)

// Resource types an authentication can belong to (as stored: capitalised).
const (
	resourceSource      = "Source"
	resourceApplication = "Application"
)

// SourceType is a seeded, global source type.
type SourceType struct {
	ID          int64
	Name        string
	ProductName string
	Vendor      string
}

// ApplicationType is a seeded, global application type.
type ApplicationType struct {
	ID                   int64
	Name                 string
	DisplayName          string
	SupportedSourceTypes []string
	// SupportedAuthTypes maps a source type name to the authtypes the UI offers.
	SupportedAuthTypes map[string][]string
}

// Ids deliberately do not follow the order of the list or of the names, so a
// client that guesses an id instead of looking it up by name fails in tests.
var sourceTypes = []SourceType{
	{ID: 1, Name: "openshift", ProductName: "Red Hat OpenShift Container Platform", Vendor: "Red Hat"},
	{ID: 7, Name: "amazon", ProductName: "Amazon Web Services", Vendor: "Amazon"},
	{ID: 3, Name: "azure", ProductName: "Microsoft Azure", Vendor: "Azure"},
	{ID: 9, Name: "google", ProductName: "Google Cloud", Vendor: "Google"},
}

var applicationTypes = []ApplicationType{
	{ID: 1, Name: "/insights/platform/catalog", DisplayName: "Automation Services Catalog",
		SupportedSourceTypes: []string{"ansible-tower"},
		SupportedAuthTypes:   map[string][]string{"ansible-tower": {"username_password"}}},
	{ID: 2, Name: "/insights/platform/cost-management", DisplayName: "Cost Management",
		SupportedSourceTypes: []string{"amazon", "azure", "google", "openshift"},
		SupportedAuthTypes:   map[string][]string{"amazon": {"arn"}, "azure": {"tenant_id_client_id_client_secret"}, "google": {"project_id_service_account_json"}, "openshift": {"token"}}},
	{ID: 5, Name: "/insights/platform/cloud-meter", DisplayName: "RHEL management",
		SupportedSourceTypes: []string{"amazon", "azure", "google"},
		SupportedAuthTypes:   map[string][]string{"amazon": {"cloud-meter-arn"}}},
	{ID: 8, Name: "/insights/platform/fifi", DisplayName: "Remediations",
		SupportedSourceTypes: []string{"satellite"},
		SupportedAuthTypes:   map[string][]string{"satellite": {"receptor_node"}}},
	{ID: 13, Name: "/insights/platform/provisioning", DisplayName: "Provisioning",
		SupportedSourceTypes: []string{"amazon"},
		SupportedAuthTypes:   map[string][]string{"amazon": {"provisioning-arn"}}},
}

// cloudMeterTypeName is the application type whose availability check URL is
// configurable (the only one Cloudoreg serves).
const cloudMeterTypeName = "/insights/platform/cloud-meter"

func sourceTypeByID(id int64) (SourceType, bool) {
	for _, st := range sourceTypes {
		if st.ID == id {
			return st, true
		}
	}
	return SourceType{}, false
}

func sourceTypeByName(name string) (SourceType, bool) {
	for _, st := range sourceTypes {
		if st.Name == name {
			return st, true
		}
	}
	return SourceType{}, false
}

func applicationTypeByID(id int64) (ApplicationType, bool) {
	for _, at := range applicationTypes {
		if at.ID == id {
			return at, true
		}
	}
	return ApplicationType{}, false
}

// applicationTypeByName matches like the real service (name LIKE %x%), so the
// short name "cloud-meter" finds "/insights/platform/cloud-meter"; an
// ambiguous name is an error there too.
func applicationTypeByName(name string) (ApplicationType, error) {
	if name == "" {
		return ApplicationType{}, badRequest("application type name is empty")
	}
	var found []ApplicationType
	for _, at := range applicationTypes {
		if strings.Contains(at.Name, name) {
			found = append(found, at)
		}
	}
	switch len(found) {
	case 0:
		return ApplicationType{}, badRequest("failed to lookup application_type_name " + name)
	case 1:
		return found[0], nil
	default:
		return ApplicationType{}, badRequest("Found more than one of the same application type name")
	}
}

func (at ApplicationType) supports(sourceType string) bool {
	for _, s := range at.SupportedSourceTypes {
		if s == sourceType {
			return true
		}
	}
	return false
}

// tenant is a row of the real service's tenants table: created on first use,
// matched by org id or by account number.
type tenant struct {
	id      int64
	orgID   string
	account string
}

// Source is a source as stored. Snapshot returns copies.
type Source struct {
	ID                  int64
	OrgID               string
	AccountNumber       string
	Name                string
	UID                 string
	SourceTypeID        int64
	AppCreationWorkflow string
	AvailabilityStatus  string
	LastCheckedAt       *time.Time
	LastAvailableAt     *time.Time
	PausedAt            *time.Time
	CreatedAt           time.Time
	UpdatedAt           time.Time

	tenantID int64
}

// Application is an application as stored.
type Application struct {
	ID                      int64
	OrgID                   string
	AccountNumber           string
	SourceID                int64
	ApplicationTypeID       int64
	Extra                   json.RawMessage
	AvailabilityStatus      string
	AvailabilityStatusError string
	LastCheckedAt           *time.Time
	LastAvailableAt         *time.Time
	PausedAt                *time.Time
	CreatedAt               time.Time
	UpdatedAt               time.Time

	tenantID int64
}

// Authentication is an authentication as stored, secret included: Snapshot is
// for tests in this process, REST never shows the password publicly.
type Authentication struct {
	ID            int64
	OrgID         string
	AccountNumber string
	SourceID      int64
	ResourceType  string
	ResourceID    int64
	Name          string
	AuthType      string
	Username      string
	Password      string
	Extra         json.RawMessage
	CreatedAt     time.Time
	UpdatedAt     time.Time

	tenantID int64
}

// ApplicationAuthentication links an application to an authentication.
type ApplicationAuthentication struct {
	ID               int64
	OrgID            string
	AccountNumber    string
	ApplicationID    int64
	AuthenticationID int64
	CreatedAt        time.Time
	UpdatedAt        time.Time

	tenantID int64
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

func (s Source) clone() Source {
	s.LastCheckedAt, s.LastAvailableAt, s.PausedAt = cloneTime(s.LastCheckedAt), cloneTime(s.LastAvailableAt), cloneTime(s.PausedAt)
	return s
}

func (a Application) clone() Application {
	a.Extra = bytes.Clone(a.Extra)
	a.LastCheckedAt, a.LastAvailableAt, a.PausedAt = cloneTime(a.LastCheckedAt), cloneTime(a.LastAvailableAt), cloneTime(a.PausedAt)
	return a
}

func (a Authentication) clone() Authentication {
	a.Extra = bytes.Clone(a.Extra)
	return a
}

// objectOrEmpty normalises a JSON "extra" value: the real service stores a
// JSON object and shows {} for none.
func objectOrEmpty(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, badRequest(`invalid JSON given in "extra" field`)
	}
	return bytes.Clone(raw), nil
}

// capitalize mirrors util.Capitalize in the real service, which stores
// "application" as "Application".
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + strings.ToLower(s[1:])
}
