package statusapi

import "time"

// The JSON bodies of the API (openapi.json describes each one); cloudoregctl
// decodes the same types.

// SourceResponse is GET /sources/{id}.
type SourceResponse struct {
	SourceID    string               `json:"source_id"`
	OrgID       string               `json:"org_id"`
	Outcome     *OutcomeResponse     `json:"outcome"`
	ParkedRetry *ParkedRetryResponse `json:"parked_retry"`
	RHSM        RHSMResponse         `json:"rhsm"`
}

// OutcomeResponse is a source's last outcome.
type OutcomeResponse struct {
	State         string    `json:"state"`
	Code          string    `json:"code,omitempty"`
	CustomerText  string    `json:"customer_text,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	ApplicationID string    `json:"application_id,omitempty"`
	AccountID     string    `json:"aws_account_id,omitempty"`
	Attempts      int       `json:"attempts"`
	EventType     string    `json:"event_type"`
	Origin        string    `json:"origin"`
	Time          time.Time `json:"time"`
}

// ParkedRetryResponse is a source's parked retry.
type ParkedRetryResponse struct {
	Due          time.Time `json:"due"`
	Attempts     int       `json:"attempts"`
	FirstFailure time.Time `json:"first_failure"`
}

// RHSMResponse is what RHSM holds for a source now.
type RHSMResponse struct {
	Registrations []RegistrationResponse `json:"registrations"`
	Error         string                 `json:"error,omitempty"`
}

// RegistrationResponse is one AWS account registered at RHSM.
type RegistrationResponse struct {
	AccountID string `json:"aws_account_id"`
	Verified  bool   `json:"verified"`
}

// ReconcileResponse is POST /sources/{id}/reconcile.
type ReconcileResponse struct {
	SourceID string `json:"source_id"`
	OrgID    string `json:"org_id"`
}

// DeadLettersResponse is a page of GET /dead-letters.
type DeadLettersResponse struct {
	DeadLetters []DeadLetterResponse `json:"dead_letters"`
	NextAfter   *uint64              `json:"next_after,omitempty"`
}

// DeadLetterResponse is one dead letter.
type DeadLetterResponse struct {
	Seq        uint64    `json:"seq"`
	SourceID   string    `json:"source_id"`
	OrgID      string    `json:"org_id"`
	Reason     string    `json:"reason"`
	Deliveries int       `json:"deliveries"`
	Time       time.Time `json:"time"`
	EventType  string    `json:"event_type"`
	// Only when one dead letter is shown.
	Detail  *string `json:"detail,omitempty"`
	Origin  *string `json:"origin,omitempty"`
	WorkSeq *uint64 `json:"work_seq,omitempty"`
}

// ReplayResponse is POST /dead-letters/{seq}/replay.
type ReplayResponse struct {
	Seq       uint64 `json:"seq"`
	WorkSeq   uint64 `json:"work_seq"`
	Duplicate bool   `json:"duplicate"`
}

// PurgeResponse is DELETE /dead-letters.
type PurgeResponse struct {
	Purged int `json:"purged"`
}

// ParkedResponse is GET /parked.
type ParkedResponse struct {
	Parked []ParkedEntry `json:"parked"`
}

// ParkedEntry is one parked retry of GET /parked.
type ParkedEntry struct {
	SourceID     string    `json:"source_id"`
	OrgID        string    `json:"org_id"`
	EventType    string    `json:"event_type"`
	Attempts     int       `json:"attempts"`
	Due          time.Time `json:"due"`
	FirstFailure time.Time `json:"first_failure"`
}

// ErrorResponse is the body of every answer that is not 2xx.
type ErrorResponse struct {
	Error string `json:"error"`
}
