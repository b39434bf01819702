// Package sources holds the values Cloudoreg reads from the Sources service
// (applications, authentications, the link table between them), as plain
// Go values the business rules take; the HTTP client that fills them is
// package sourcesapi.
package sources

// CloudMeterTypeName is the application type Cloudoreg serves.
const CloudMeterTypeName = "/insights/platform/cloud-meter"

// Application is the part of a Sources application Cloudoreg reads.
type Application struct {
	ID                string  `json:"id"`
	SourceID          string  `json:"source_id"`
	ApplicationTypeID string  `json:"application_type_id"`
	PausedAt          *string `json:"paused_at"`
}

// Paused reports whether the customer paused the application.
func (a Application) Paused() bool { return a.PausedAt != nil && *a.PausedAt != "" }

// Authentication is a Sources authentication; Password is only filled by the
// internal read and is a secret, like Extra.ExternalID.
type Authentication struct {
	ID           string `json:"id"`
	AuthType     string `json:"authtype"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	ResourceType string `json:"resource_type"`
	ResourceID   string `json:"resource_id"`
	Extra        struct {
		ExternalID string `json:"external_id"`
	} `json:"extra"`
}

// Link is a row of the link table (application_authentications): an
// authentication attached to an application. Sources answers its ids as
// JSON strings.
type Link struct {
	ID               string `json:"id"`
	ApplicationID    string `json:"application_id"`
	AuthenticationID string `json:"authentication_id"`
}

// LinkFilter is the column the link table is filtered by.
type LinkFilter string

// The two ways to ask the link table.
const (
	LinksOfApplication    LinkFilter = "application_id"
	LinksOfAuthentication LinkFilter = "authentication_id"
)
