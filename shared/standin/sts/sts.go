// Package sts is a local stand-in for AWS STS (docs/contract.md, "AWS STS").
// It speaks the AWS Query protocol as aws-sdk-go-v2's STS client sends and
// parses it: form-encoded requests with Action=AssumeRole or
// Action=GetCallerIdentity, XML answers in the 2011-06-15 namespace, and
// <ErrorResponse> errors with AWS's codes and HTTP statuses.
//
// A trust table (see Trust and scripts/sts-trust.json) decides who may assume
// which role. AssumeRole hands out fresh temporary credentials and remembers
// them; GetCallerIdentity recognises the caller by the access key id in the
// SigV4 Authorization header. Signatures are not verified; the session token
// of issued credentials is.
//
// Routes:
//
//	POST /            the STS API (any path but the admin ones; GET with a query works too)
//	GET  /_calls      every recorded API call (JSON); DELETE forgets them
//	GET  /_trust      the trust table (JSON); POST replaces it
//	POST /_reset      forget calls, issued credentials and the active fault
//	POST/DELETE /_faults  set or clear a fault (see package faults)
//
// The admin routes are never faulted.
package sts

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/sirupsen/logrus"
)

// Namespace is the XML namespace of every STS answer.
const Namespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// APIVersion is the Query protocol Version the stand-in speaks.
const APIVersion = "2011-06-15"

// The identity of callers whose access key the stand-in did not issue:
// Cloudoreg's own credentials, whatever they are.
const (
	ServiceAccount = "000000000000"
	ServiceUserARN = "arn:aws:iam::000000000000:user/cloudoreg"
)

// Admin paths.
const (
	CallsPath = "/_calls"
	TrustPath = "/_trust"
	ResetPath = "/_reset"
)

// MaxCalls bounds the call log; the oldest calls are dropped beyond it.
const MaxCalls = 10000

// Session durations AssumeRole accepts (the roles' MaxSessionDuration is
// AWS's default of one hour).
const (
	minDuration     = 900
	maxDuration     = 3600
	defaultDuration = 3600
	maxPolicyLen    = 2048
	maxBody         = 1 << 20
)

// Patterns from the STS API reference.
var (
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	externalIDRE  = regexp.MustCompile(`^[\w+=,.@:/-]*$`)
	credentialRE  = regexp.MustCompile(`Credential=([^/,\s]+)/`)
)

// Call is one recorded API request. Status and ErrorCode are what the
// stand-in answered (Status 0: the client went away before any answer, as
// with a delay fault longer than the client's timeout).
type Call struct {
	Action          string    `json:"action"`
	RoleARN         string    `json:"role_arn,omitempty"`
	RoleSessionName string    `json:"role_session_name,omitempty"`
	ExternalIDSent  bool      `json:"external_id_sent"`
	ExternalID      string    `json:"external_id,omitempty"`
	PolicySent      bool      `json:"policy_sent"`
	Policy          string    `json:"policy,omitempty"`
	DurationSeconds int       `json:"duration_seconds,omitempty"`
	AccessKeyID     string    `json:"access_key_id,omitempty"`
	Status          int       `json:"status"`
	ErrorCode       string    `json:"error_code,omitempty"`
	Time            time.Time `json:"time"`
}

// session is one set of issued temporary credentials.
type session struct {
	roleARN    string
	account    string
	arn        string // arn:<partition>:sts::<account>:assumed-role/<name>/<session>
	userID     string // <role id>:<session>
	token      string
	expiration time.Time
}

// Server is the stand-in. It is an http.Handler, safe for concurrent use.
type Server struct {
	log      logrus.FieldLogger
	injector *faults.Injector
	api      http.Handler // the STS API behind the fault injector

	mu       sync.Mutex
	trust    Trust
	roles    map[string]Role
	sessions map[string]session // by access key id
	calls    []Call
}

// New returns a stand-in that decides with trust (validate it first, see
// LoadTrust) and logs one line per call to log (nil: no logging). It never
// logs external ids, secrets or session tokens.
func New(trust Trust, log logrus.FieldLogger) *Server {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	s := &Server{log: log, sessions: map[string]session{}}
	s.SetTrust(trust)
	s.injector = faults.New(writeFault)
	s.api = s.injector.Wrap(http.HandlerFunc(s.serveAPI))
	return s
}

// Faults is the fault injector applied to API requests.
func (s *Server) Faults() *faults.Injector { return s.injector }

// SetTrust replaces the trust table. Credentials already issued stay valid;
// their GetCallerIdentity calls follow the new table.
func (s *Server) SetTrust(t Trust) {
	roles := make(map[string]Role, len(t.Roles))
	for _, r := range t.Roles {
		roles[r.ARN] = r
	}
	t.Roles = slices.Clone(t.Roles)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trust, s.roles = t, roles
}

// Trust returns the current trust table.
func (s *Server) Trust() Trust {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.trust
	t.Roles = slices.Clone(t.Roles)
	return t
}

// Calls returns a copy of the recorded API calls, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Reset forgets the recorded calls and issued credentials and clears the
// active fault. The trust table stays.
func (s *Server) Reset() {
	s.injector.Clear()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	s.sessions = map[string]session{}
}

// ServeHTTP serves the admin routes and the STS API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case CallsPath:
		s.serveCalls(w, r)
	case TrustPath:
		s.serveTrust(w, r)
	case ResetPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	case faults.AdminPath:
		s.api.ServeHTTP(w, r)
	default:
		s.serveRecorded(w, r)
	}
}

// serveRecorded runs one API request and records it. The answer is buffered
// and sent only after the call is recorded, so a client that has its answer
// always finds the call in Calls.
func (s *Server) serveRecorded(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	parseErr := r.ParseForm()
	f := r.Form
	c := Call{
		Action:          f.Get("Action"),
		RoleARN:         f.Get("RoleArn"),
		RoleSessionName: f.Get("RoleSessionName"),
		ExternalIDSent:  f.Has("ExternalId"),
		ExternalID:      f.Get("ExternalId"),
		PolicySent:      f.Has("Policy"),
		Policy:          f.Get("Policy"),
		AccessKeyID:     accessKeyID(r),
		Time:            time.Now().UTC(),
	}
	c.DurationSeconds, _ = strconv.Atoi(f.Get("DurationSeconds"))

	buf := &bufferedWriter{header: http.Header{}}
	if parseErr != nil {
		writeError(buf, http.StatusBadRequest, "MalformedQueryString", "The request body could not be parsed.")
	} else {
		s.api.ServeHTTP(buf, r)
	}
	c.Status, c.ErrorCode = buf.status, buf.code

	s.mu.Lock()
	s.calls = append(s.calls, c)
	if len(s.calls) > MaxCalls {
		s.calls = slices.Delete(s.calls, 0, len(s.calls)-MaxCalls)
	}
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{
		"action": c.Action, "role_arn": c.RoleARN, "role_session_name": c.RoleSessionName,
		"external_id_sent": c.ExternalIDSent, "policy_sent": c.PolicySent,
		"issued_key": strings.HasPrefix(c.AccessKeyID, "ASIA"), "status": c.Status, "error_code": c.ErrorCode,
	}).Info("sts stand-in call")

	buf.flush(w)
}

// serveAPI answers one STS request (behind the fault injector).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "InvalidAction", "STS accepts POST and GET requests only.")
		return
	}
	action, version := r.Form.Get("Action"), r.Form.Get("Version")
	if action == "" {
		writeError(w, http.StatusBadRequest, "MissingAction", "Missing Action")
		return
	}
	if version != "" && version != APIVersion {
		writeError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", action, version))
		return
	}
	switch action {
	case "AssumeRole":
		s.assumeRole(w, r)
	case "GetCallerIdentity":
		s.getCallerIdentity(w, r)
	default:
		writeError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", action, APIVersion))
	}
}

// caller authenticates a request: the identity of its access key, or false
// after writing the error.
func (s *Server) caller(w http.ResponseWriter, r *http.Request) (arn string, sess session, issued, ok bool) {
	akid := accessKeyID(r)
	if akid == "" {
		writeError(w, http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token")
		return "", session{}, false, false
	}
	s.mu.Lock()
	sess, issued = s.sessions[akid]
	s.mu.Unlock()
	if !issued {
		return ServiceUserARN, session{}, false, true
	}
	token := r.Header.Get("X-Amz-Security-Token")
	if token == "" {
		token = r.Form.Get("X-Amz-Security-Token")
	}
	if token != sess.token {
		writeError(w, http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
		return "", session{}, false, false
	}
	if time.Now().After(sess.expiration) {
		writeError(w, http.StatusForbidden, "ExpiredToken", "The security token included in the request is expired")
		return "", session{}, false, false
	}
	return sess.arn, sess, true, true
}

func (s *Server) assumeRole(w http.ResponseWriter, r *http.Request) {
	callerARN, _, _, ok := s.caller(w, r)
	if !ok {
		return
	}
	f := r.Form
	arn, name := f.Get("RoleArn"), f.Get("RoleSessionName")
	switch {
	case arn == "":
		validationError(w, "Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
		return
	case name == "":
		validationError(w, "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
		return
	case !sessionNameRE.MatchString(name):
		validationError(w, fmt.Sprintf("Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2 to 64", name))
		return
	}
	duration := defaultDuration
	if v := f.Get("DurationSeconds"); v != "" {
		d, err := strconv.Atoi(v)
		if err != nil || d < minDuration || d > 43200 {
			validationError(w, "Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200")
			return
		}
		if d > maxDuration {
			writeError(w, http.StatusBadRequest, "ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
			return
		}
		duration = d
	}
	if f.Has("ExternalId") {
		if problem := externalIDProblem(f.Get("ExternalId")); problem != "" {
			validationError(w, problem)
			return
		}
	}
	packed := 0
	if f.Has("Policy") {
		p := f.Get("Policy")
		if len(p) > maxPolicyLen {
			validationError(w, "Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048")
			return
		}
		if !json.Valid([]byte(p)) {
			writeError(w, http.StatusBadRequest, "MalformedPolicyDocument", "The policy is not in the valid JSON format.")
			return
		}
		packed = max(1, len(p)*100/maxPolicyLen)
	}
	parsed, err := parseRoleARN(arn)
	if err != nil {
		validationError(w, fmt.Sprintf("%s is invalid", arn))
		return
	}

	s.mu.Lock()
	role, known := s.roles[arn]
	s.mu.Unlock()
	if !known || !role.AssumeRole.allows() || (role.ExternalID != "" && f.Get("ExternalId") != role.ExternalID) {
		writeError(w, http.StatusForbidden, "AccessDenied",
			fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", callerARN, arn))
		return
	}

	roleID := roleUniqueID(arn)
	sess := session{
		roleARN:    arn,
		account:    parsed.account,
		arn:        fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", parsed.partition, parsed.account, parsed.name, name),
		userID:     roleID + ":" + name,
		token:      base64.StdEncoding.EncodeToString(randomBytes(192)),
		expiration: time.Now().Add(time.Duration(duration) * time.Second).UTC().Truncate(time.Second),
	}
	akid := "ASIA" + base32.StdEncoding.EncodeToString(randomBytes(10)) // 16 characters
	secret := base64.StdEncoding.EncodeToString(randomBytes(30))        // 40 characters
	s.mu.Lock()
	s.sessions[akid] = sess
	s.mu.Unlock()

	resp := assumeRoleResponse{Xmlns: Namespace}
	resp.Metadata.RequestID = newRequestID()
	resp.Result.AssumedRoleUser.Arn = sess.arn
	resp.Result.AssumedRoleUser.AssumedRoleID = sess.userID
	resp.Result.Credentials.AccessKeyID = akid
	resp.Result.Credentials.SecretAccessKey = secret
	resp.Result.Credentials.SessionToken = sess.token
	resp.Result.Credentials.Expiration = sess.expiration.Format(time.RFC3339)
	if packed > 0 {
		resp.Result.PackedPolicySize = &packed
	}
	writeXML(w, resp.Metadata.RequestID, resp)
}

// Limits of AssumeRole's ExternalId.
const (
	minExternalID = 2
	maxExternalID = 1224
)

// externalIDProblem is the constraint an external id breaks, "" when AWS
// accepts it. The text names the constraint, never the value: the external
// id is a secret, and the stand-in gives its clients nothing to leak.
func externalIDProblem(ext string) string {
	const at = "Value at 'externalId' failed to satisfy constraint: "
	switch {
	case len(ext) < minExternalID:
		return at + "Member must have length greater than or equal to " + strconv.Itoa(minExternalID)
	case len(ext) > maxExternalID:
		return at + "Member must have length less than or equal to " + strconv.Itoa(maxExternalID)
	case !externalIDRE.MatchString(ext):
		return at + `Member must satisfy regular expression pattern: [\w+=,.@:\/-]*`
	}
	return ""
}

func (s *Server) getCallerIdentity(w http.ResponseWriter, r *http.Request) {
	callerARN, sess, issued, ok := s.caller(w, r)
	if !ok {
		return
	}
	resp := getCallerIdentityResponse{Xmlns: Namespace}
	resp.Metadata.RequestID = newRequestID()
	if !issued {
		resp.Result.Arn = callerARN
		resp.Result.UserID = "AIDA" + roleUniqueID(callerARN)
		resp.Result.Account = ServiceAccount
		writeXML(w, resp.Metadata.RequestID, resp)
		return
	}
	s.mu.Lock()
	role, known := s.roles[sess.roleARN]
	s.mu.Unlock()
	// A role removed from the table since its credentials were issued is
	// denied too: the table is the whole truth of the stand-in.
	if !known || !role.GetCallerIdentity.allows() {
		writeError(w, http.StatusForbidden, "AccessDenied",
			fmt.Sprintf("User: %s is not authorized to perform: sts:GetCallerIdentity", sess.arn))
		return
	}
	resp.Result.Arn = sess.arn
	resp.Result.UserID = sess.userID
	resp.Result.Account = sess.account
	writeXML(w, resp.Metadata.RequestID, resp)
}

func (s *Server) serveCalls(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		calls := s.Calls()
		if calls == nil {
			calls = []Call{}
		}
		writeJSON(w, calls)
	case http.MethodDelete:
		s.mu.Lock()
		s.calls = nil
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET, DELETE")
	}
}

func (s *Server) serveTrust(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, s.Trust())
	case http.MethodPost:
		t, err := decodeTrust(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "invalid trust table: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.SetTrust(t)
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

// accessKeyID is the access key id of a SigV4-signed request (header or
// presigned query), or "".
func accessKeyID(r *http.Request) string {
	if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		return m[1]
	}
	if c := r.Form.Get("X-Amz-Credential"); c != "" {
		return strings.SplitN(c, "/", 2)[0]
	}
	return ""
}

// roleUniqueID is a stable AWS-looking unique id ("AROA" + 17 characters)
// derived from an ARN.
func roleUniqueID(arn string) string {
	sum := sha256.Sum256([]byte(arn))
	return "AROA" + base32.StdEncoding.EncodeToString(sum[:])[:17]
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// The XML answers.

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type assumeRoleResponse struct {
	XMLName xml.Name `xml:"AssumeRoleResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		AssumedRoleUser struct {
			Arn           string `xml:"Arn"`
			AssumedRoleID string `xml:"AssumedRoleId"`
		} `xml:"AssumedRoleUser"`
		Credentials struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			SessionToken    string `xml:"SessionToken"`
			Expiration      string `xml:"Expiration"`
		} `xml:"Credentials"`
		PackedPolicySize *int `xml:"PackedPolicySize,omitempty"`
	} `xml:"AssumeRoleResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type getCallerIdentityResponse struct {
	XMLName xml.Name `xml:"GetCallerIdentityResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Result  struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	} `xml:"GetCallerIdentityResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func newRequestID() string {
	b := randomBytes(16)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// writeXML writes a success answer with request id id.
func writeXML(w http.ResponseWriter, id string, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalFailure", "The stand-in could not encode its answer.")
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("x-amzn-RequestId", id)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append([]byte(xml.Header), body...))
}

// writeError writes an AWS Query error. Type is Receiver for 5xx (AWS's
// fault) and Sender otherwise.
func writeError(w http.ResponseWriter, status int, code, message string) {
	resp := errorResponse{Xmlns: Namespace, RequestID: newRequestID()}
	resp.Error.Type = "Sender"
	if status >= 500 {
		resp.Error.Type = "Receiver"
	}
	resp.Error.Code, resp.Error.Message = code, message
	body, _ := xml.Marshal(resp) // plain strings: cannot fail
	if b, ok := w.(*bufferedWriter); ok {
		b.code = code
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("x-amzn-RequestId", resp.RequestID)
	w.WriteHeader(status)
	_, _ = w.Write(append([]byte(xml.Header), body...))
}

func validationError(w http.ResponseWriter, detail string) {
	writeError(w, http.StatusBadRequest, "ValidationError", "1 validation error detected: "+detail)
}

// writeFault is the faults.Writer: an AWS error for status, with a code
// fitting the status when the fault names none.
func writeFault(w http.ResponseWriter, status int, code string) {
	if code == "" {
		switch {
		case status == http.StatusForbidden:
			code = "AccessDenied"
		case status == http.StatusServiceUnavailable:
			code = "ServiceUnavailable"
		case status >= 500:
			code = "InternalFailure"
		default:
			code = "Throttling"
		}
	}
	messages := map[string]string{
		"Throttling":         "Rate exceeded",
		"ServiceUnavailable": "Service is unavailable. Please try again later.",
		"InternalFailure":    "An internal error occurred. Please try again later.",
		"AccessDenied":       "Access denied (injected fault).",
	}
	msg, ok := messages[code]
	if !ok {
		msg = "Injected fault."
	}
	writeError(w, status, code, msg)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	w.WriteHeader(http.StatusMethodNotAllowed)
}

// bufferedWriter holds an answer until the call is recorded.
type bufferedWriter struct {
	header http.Header
	status int
	code   string // the AWS error code written, if any
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// flush sends the buffered answer; nothing when nothing was written (the
// client is gone).
func (b *bufferedWriter) flush(w http.ResponseWriter) {
	if b.status == 0 {
		return
	}
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(b.body.Len()))
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
