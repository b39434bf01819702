// Package awsverify verifies that Cloudoreg can use a customer's IAM role
// (docs/contract.md, "AWS STS"): AssumeRole with Cloudoreg's own
// credentials, the customer's external id and a session policy that allows
// nothing but sts:GetCallerIdentity, then GetCallerIdentity with the
// temporary credentials. Every failure comes back classified by package failure:
// permanent with the code to report (CG1004, CG3002, CG3003) or
// transient (retried by the processor with its own backoff).
//
// Errors never carry the external id or any credential: they are logged.
// They are built from the operation, the AWS error code, HTTP status and
// request id only; AWS's message is left out, because it quotes request
// values (an invalid external id, for one). Nothing is ever redacted out of
// a text: what could hold a secret is not put in.
package awsverify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cloudoreg/cloudoreg/processor/internal/arn"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Target names STS in classified failures.
const Target = "sts"

// SessionPolicy is the inline session policy of every AssumeRole: whatever
// the customer's role allows, the session can only ask who it is.
const SessionPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:GetCallerIdentity","Resource":"*"}]}`

// SessionDuration is the lifetime asked for the temporary credentials (the
// minimum STS allows).
const SessionDuration = 900 * time.Second

// Defaults for Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRegion  = "us-east-1"
)

// ErrServiceCredentials marks (inside a transient failure) an AssumeRole
// that AWS rejected because of Cloudoreg's own credentials, not the
// customer's role. It wraps failure.ErrConfiguration: an operator must fix
// the AWS_* settings or the credential chain.
var ErrServiceCredentials error = serviceCredentialsError{}

type serviceCredentialsError struct{}

func (serviceCredentialsError) Error() string {
	return "STS rejected Cloudoreg's own AWS credentials (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the SDK's credential chain)"
}

func (serviceCredentialsError) Unwrap() error { return failure.ErrConfiguration }

// Config configures a Verifier.
type Config struct {
	// Endpoint, when set, is the STS base endpoint (the local stand-in);
	// empty means AWS's own endpoint for Region.
	Endpoint string
	// Region to sign for and resolve the endpoint in; empty means the SDK's
	// default (AWS_REGION, shared config), else DefaultRegion.
	Region string
	// Static credentials of Cloudoreg. When AccessKeyID is empty the SDK's
	// default credential chain is used (environment, shared files, web
	// identity, container and instance roles).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Timeout bounds each STS call; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Verifier verifies customer roles. It is safe for concurrent use.
type Verifier struct {
	client  *sts.Client
	timeout time.Duration
}

// New builds a Verifier. The SDK's own retries are off: the processor
// retries with its own backoff and classifies every failure itself.
func New(ctx context.Context, c Config) (*Verifier, error) {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("awsverify: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	client := sts.NewFromConfig(cfg, func(o *sts.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 1
	})
	return &Verifier{
		client:  client,
		timeout: c.Timeout,
	}, nil
}

// SessionName is the RoleSessionName Cloudoreg uses for role: it shows up
// in the customer's CloudTrail as cloudoreg-<account id>.
func SessionName(role arn.Role) string { return "cloudoreg-" + role.AccountID }

// Verify checks that Cloudoreg can assume role with externalID (sent, without
// surrounding whitespace, when not blank) and that the session is that
// role's. role should come from arn.ParseRole: only role.Raw is used, parsed
// again. nil means verified; each STS call is bounded by Config.Timeout.
// Failures are classified:
//   - the ARN does not parse: permanent CG1004;
//   - any client error of AssumeRole (denied, an external id AWS rejects,
//     STS disabled in the region, an unknown code) but throttling and
//     Cloudoreg's own credentials: permanent CG3002;
//   - GetCallerIdentity with the session fails, or the identity is not an
//     assumed role of the customer's account: permanent CG3003;
//   - throttling, 5xx, timeouts, network errors and Cloudoreg's own
//     credentials rejected (see ErrServiceCredentials): transient.
func (v *Verifier) Verify(ctx context.Context, role arn.Role, externalID string) error {
	// Re-parse Raw: never send AWS an ARN that did not go through the parser.
	role, err := arn.ParseRole(role.Raw)
	if err != nil {
		return err
	}
	ext := strings.TrimSpace(externalID)

	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(role.Raw),
		RoleSessionName: aws.String(SessionName(role)),
		Policy:          aws.String(SessionPolicy),
		DurationSeconds: aws.Int32(int32(SessionDuration / time.Second)),
	}
	if ext != "" {
		in.ExternalId = aws.String(ext)
	}
	actx, cancel := context.WithTimeout(ctx, v.timeout)
	out, err := v.client.AssumeRole(actx, in)
	cancel()
	if err != nil {
		return classify(opAssumeRole, err)
	}
	c := out.Credentials
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretAccessKey) == "" {
		// A 200 without credentials is a broken answer, not the customer's doing.
		return failure.Transient(Target, errors.New(opAssumeRole+": the answer carries no credentials"))
	}

	session := sts.New(v.client.Options(), func(o *sts.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(
			aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	})
	gctx, cancel := context.WithTimeout(ctx, v.timeout)
	id, err := session.GetCallerIdentity(gctx, &sts.GetCallerIdentityInput{})
	cancel()
	if err != nil {
		return classify(opGetCallerIdentity, err)
	}
	if reason := checkIdentity(role, aws.ToString(id.Arn), aws.ToString(id.Account)); reason != "" {
		return failure.Permanent(status.CG3003, Target, errors.New(truncate(opGetCallerIdentity+": "+reason, maxMessage)))
	}
	return nil
}

// checkIdentity says why arn (and account, when given) is not an assumed
// role session of role, or "" when it is. The role name is compared without
// case, as IAM does.
func checkIdentity(role arn.Role, arn, account string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sts" || parts[3] != "" {
		return fmt.Sprintf("identity %q is not an STS ARN", arn)
	}
	if parts[1] != role.Partition || parts[4] != role.AccountID {
		return fmt.Sprintf("identity %q is not in partition %s, account %s", arn, role.Partition, role.AccountID)
	}
	res := strings.Split(parts[5], "/")
	if len(res) != 3 || res[0] != "assumed-role" || !strings.EqualFold(res[1], role.Name) || res[2] != SessionName(role) {
		return fmt.Sprintf("identity %q is not the assumed role %s with session %s", arn, role.Name, SessionName(role))
	}
	if account != "" && account != role.AccountID {
		return fmt.Sprintf("identity account %q is not %s", account, role.AccountID)
	}
	return ""
}

// throttlingCodes are transient whatever the operation: AWS is asking to
// slow down, or reports trouble of its own with a 4xx.
var throttlingCodes = map[string]bool{
	"Throttling": true, "ThrottlingException": true, "ThrottledException": true,
	"RequestThrottledException": true, "TooManyRequestsException": true, "RequestThrottled": true,
	"RequestLimitExceeded": true, "BandwidthLimitExceeded": true, "LimitExceededException": true,
	"SlowDown": true, "PriorRequestNotComplete": true, "ProvisionedThroughputExceededException": true,
	"RequestTimeout": true, "RequestTimeoutException": true,
	"ServiceUnavailable": true, "InternalFailure": true, "InternalError": true,
	// Clock skew: the SDK corrects its clock offset on the next attempt.
	"RequestExpired": true, "RequestTimeTooSkewed": true,
}

// ownCredentialCodes are AssumeRole errors about the credentials that signed
// the request: Cloudoreg's own. Blaming the customer (CG3002) would send them
// to fix a role that is fine, so they are transient, wrap
// ErrServiceCredentials, and are logged as errors: the processor retries
// while an operator fixes the configuration (or the credential chain
// refreshes an expired token) and reports CG3000 only when its retry budget
// runs out. On GetCallerIdentity the same codes are about the session the
// customer's role gave us, so they are CG3003 there.
var ownCredentialCodes = map[string]bool{
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"SignatureDoesNotMatch":       true,
	"IncompleteSignature":         true,
	"MissingAuthenticationToken":  true,
	"InvalidAccessKeyId":          true,
	"ExpiredToken":                true,
	"ExpiredTokenException":       true,
	"AuthFailure":                 true,
	"OptInRequired":               true,
}

// Operation names, as they appear in errors.
const (
	opAssumeRole        = "AssumeRole"
	opGetCallerIdentity = "GetCallerIdentity"
)

// classify turns an SDK error of op into a classified failure, as
// cloudigrade did: on AssumeRole every client error other than throttling is
// the customer's role setup (CG3002; AccessDenied covers a missing role, a
// trust policy that does not trust Cloudoreg and a wrong or missing external
// id; ValidationError an external id AWS does not accept; RegionDisabled STS
// not activated for the customer's account), except that Cloudoreg's own
// credentials being rejected is transient (see ownCredentialCodes). Every
// non-transient error of GetCallerIdentity is CG3003: the credentials that
// signed it are the session the customer's role gave us.
//
// The error text holds the operation, the AWS error code, the HTTP status
// and the request id, never AWS's message: AWS quotes request values in it
// (an invalid external id, for one), and the code and request id are what
// AWS support and CloudTrail need.
func classify(op string, err error) error {
	var (
		apiErr  smithy.APIError
		respErr *awshttp.ResponseError
		sendErr *smithyhttp.RequestSendError
		urlErr  *url.Error
		netErr  net.Error
		httpSt  int
		reqID   string
	)
	if errors.As(err, &respErr) {
		httpSt, reqID = respErr.HTTPStatusCode(), respErr.ServiceRequestID()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return failure.Transient(Target, fmt.Errorf("%s: timed out: %w", op, context.DeadlineExceeded))
	case errors.Is(err, context.Canceled):
		return failure.Transient(Target, fmt.Errorf("%s: %w", op, context.Canceled))
	case errors.As(err, &urlErr):
		// The URL is the configured endpoint and the request body (with the
		// external id) is not in the error; the cause alone is enough.
		return failure.Transient(Target, fmt.Errorf("%s: network error: %w", op, urlErr.Err))
	case errors.As(err, &sendErr):
		return failure.Transient(Target, fmt.Errorf("%s: network error: %w", op, sendErr.Err))
	case errors.As(err, &netErr):
		return failure.Transient(Target, fmt.Errorf("%s: network error: %w", op, netErr))
	case !errors.As(err, &apiErr):
		if httpSt != 0 {
			// An answer that is not an AWS error document (a proxy's page, a
			// truncated body) is never the customer's doing.
			return failure.Transient(Target, fmt.Errorf("%s: unreadable answer (HTTP %d, request id %s)", op, httpSt, token(reqID)))
		}
		// Raised by the SDK before anything was sent (no credentials in the
		// chain, for one): its text describes Cloudoreg's side only.
		return failure.Transient(Target, errors.New(truncate(op+": "+err.Error(), maxMessage)))
	}

	code := apiErr.ErrorCode()
	msg := fmt.Errorf("%s: %s (HTTP %d, request id %s)", op, token(code), httpSt, token(reqID))
	if by := credentialChainCall(op, err); by != "" {
		// The SDK's credential chain (web identity, for one) failed to get
		// Cloudoreg's own credentials: its STS call's error says nothing of
		// the customer's role.
		msg = fmt.Errorf("%s: getting Cloudoreg's credentials: %s: %s", op, by, token(code))
		if throttlingCodes[code] || httpSt >= 500 || httpSt == http.StatusTooManyRequests {
			return failure.Transient(Target, msg)
		}
		return failure.Transient(Target, fmt.Errorf("%w: %w", ErrServiceCredentials, msg))
	}
	switch {
	case throttlingCodes[code] || httpSt >= 500 || httpSt == http.StatusTooManyRequests:
		return failure.Transient(Target, msg)
	case op == opGetCallerIdentity:
		return failure.Permanent(status.CG3003, Target, msg)
	case ownCredentialCodes[code]:
		return failure.Transient(Target, fmt.Errorf("%w: %w", ErrServiceCredentials, msg))
	}
	return failure.Permanent(status.CG3002, Target, msg)
}

// credentialChainCall names the operation inside err that is not op: an
// API call the SDK made on its own to get the credentials op is signed with
// (AssumeRoleWithWebIdentity, for one). "" when err is op's alone.
func credentialChainCall(op string, err error) string {
	var oe *smithy.OperationError
	for e := err; errors.As(e, &oe); e = oe.Err {
		if oe.OperationName != op {
			return token(oe.OperationName)
		}
	}
	return ""
}

// tokenRE is what AWS error codes and request ids look like.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// token quotes an identifier AWS sent; anything else (a broken or hostile
// answer) is not repeated.
func token(s string) string {
	if tokenRE.MatchString(s) {
		return s
	}
	if s == "" {
		return "(none)"
	}
	return "(malformed)"
}

// maxMessage bounds the text of an error that quotes the SDK or an answer
// (it is logged).
const maxMessage = 1024

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
