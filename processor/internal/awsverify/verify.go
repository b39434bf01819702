// Package awsverify verifies that Cloudoreg can use a customer's IAM role
// (CONTRACT.md section 4): AssumeRole with Cloudoreg's own credentials, the
// customer's external id and a session policy that allows nothing but
// sts:GetCallerIdentity, then GetCallerIdentity with the temporary
// credentials. Every failure comes back classified by package failure:
// permanent with the code to report (CG1004, CG3000, CG3002, CG3003) or
// transient (retried by the processor with its own backoff).
//
// Errors never carry the external id or any credential: they are logged.
// They are built from the AWS error code, HTTP status and request id, and
// the AWS message with every known secret redacted (AWS echoes an invalid
// external id in its ValidationError message, for one).
package awsverify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
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

	"github.com/cloudoreg/cloudoreg/processor/internal/failure"
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
// customer's role. Operators must fix the configuration; test it with
// errors.Is to log it loudly.
var ErrServiceCredentials = errors.New("STS rejected Cloudoreg's own AWS credentials")

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
	secrets []string // Cloudoreg's static credentials, redacted from errors
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
		secrets: []string{c.AccessKeyID, c.SecretAccessKey, c.SessionToken},
	}, nil
}

// SessionName is the RoleSessionName Cloudoreg uses for role: it shows up
// in the customer's CloudTrail as cloudoreg-<account id>.
func SessionName(role RoleARN) string { return "cloudoreg-" + role.AccountID }

// Verify checks that Cloudoreg can assume role with externalID (sent, without
// surrounding whitespace, when not blank) and that the session is that
// role's. role should come from ParseRoleARN: only role.Raw is used, parsed
// again. nil means verified; each STS call is bounded by Config.Timeout.
// Failures are classified:
//   - the ARN does not parse: permanent CG1004;
//   - AssumeRole denied: permanent CG3002;
//   - AssumeRole rejected the request for another customer-side reason
//     (invalid external id, STS not activated in the region): permanent CG3000;
//   - GetCallerIdentity with the session fails, or the identity is not an
//     assumed role of the customer's account: permanent CG3003;
//   - throttling, 5xx, timeouts, network errors, Cloudoreg's own credentials
//     rejected (see ErrServiceCredentials) and anything unexpected: transient.
func (v *Verifier) Verify(ctx context.Context, role RoleARN, externalID string) error {
	// Re-parse Raw: never send AWS an ARN that did not go through the parser.
	role, err := ParseRoleARN(role.Raw)
	if err != nil {
		return err
	}
	ext := strings.TrimSpace(externalID)
	secrets := append([]string{externalID, ext}, v.secrets...)

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
		return classify(opAssumeRole, err, secrets)
	}
	c := out.Credentials
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretAccessKey) == "" {
		// A 200 without credentials is a broken answer, not the customer's doing.
		return failure.Transient(Target, errors.New(opAssumeRole+": the answer carries no credentials"))
	}
	secrets = append(secrets, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))

	session := sts.New(v.client.Options(), func(o *sts.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(
			aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	})
	gctx, cancel := context.WithTimeout(ctx, v.timeout)
	id, err := session.GetCallerIdentity(gctx, &sts.GetCallerIdentityInput{})
	cancel()
	if err != nil {
		return classify(opGetCallerIdentity, err, secrets)
	}
	if reason := checkIdentity(role, aws.ToString(id.Arn), aws.ToString(id.Account)); reason != "" {
		return failure.Permanent(status.CG3003, Target, errors.New(truncate(redact(opGetCallerIdentity+": "+reason, secrets), maxMessage)))
	}
	return nil
}

// checkIdentity says why arn (and account, when given) is not an assumed
// role session of role, or "" when it is. The role name is compared without
// case, as IAM does.
func checkIdentity(role RoleARN, arn, account string) string {
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

// codeClass is what an AWS error code on AssumeRole means.
type codeClass int

const (
	classUnknown codeClass = iota
	classDenied
	classOwnCredentials
	classRejected
)

// Codes that are transient whatever the operation: throttling (AWS's and
// the SDK's own list) and server-side trouble reported with a 4xx.
var transientCodes = map[string]bool{
	"Throttling": true, "ThrottlingException": true, "ThrottledException": true,
	"RequestThrottledException": true, "TooManyRequestsException": true, "RequestThrottled": true,
	"RequestLimitExceeded": true, "BandwidthLimitExceeded": true, "LimitExceededException": true,
	"SlowDown": true, "PriorRequestNotComplete": true, "ProvisionedThroughputExceededException": true,
	"RequestTimeout": true, "RequestTimeoutException": true, "IDPCommunicationError": true,
	"ServiceUnavailable": true, "InternalFailure": true, "InternalError": true,
	// Clock skew: the SDK corrects its clock offset on the next attempt.
	"RequestExpired": true, "RequestTimeTooSkewed": true,
}

// assumeRoleCodes classifies AssumeRole errors that are not transient.
//
// AccessDenied is what AWS answers when the role's trust policy does not
// trust Cloudoreg's principal, when the external id does not match, when the
// role does not exist, and also when Cloudoreg's own policy lacks
// sts:AssumeRole: the codes cannot tell these apart and only the first three
// happen with a correctly deployed Cloudoreg, so AccessDenied is the
// customer's (CG3002).
//
// InvalidClientTokenId, SignatureDoesNotMatch, ExpiredToken and friends are
// about the credentials that signed the request: Cloudoreg's own. Reporting
// them to the customer as CG3002 would blame the wrong party, so they are
// transient (wrapping ErrServiceCredentials): the processor retries while an
// operator fixes the configuration (or the credential chain refreshes an
// expired token) and reports CG3000 only if its retry budget runs out.
//
// ValidationError and friends mean AWS refused the customer's input (an
// external id that is not a valid external id, an ARN AWS rejects) or that
// STS is not activated in the region for the customer's account: no retry
// helps, but it is not a denial, so CG3000. MalformedPolicyDocument and
// PackedPolicyTooLarge would be a bug in SessionPolicy; retrying cannot fix
// that either.
//
// Any other code is transient: when in doubt, package failure retries
// rather than report a false "unavailable".
var assumeRoleCodes = map[string]codeClass{
	"AccessDenied":          classDenied,
	"AccessDeniedException": classDenied,

	"InvalidClientTokenId":        classOwnCredentials,
	"UnrecognizedClientException": classOwnCredentials,
	"SignatureDoesNotMatch":       classOwnCredentials,
	"IncompleteSignature":         classOwnCredentials,
	"MissingAuthenticationToken":  classOwnCredentials,
	"InvalidAccessKeyId":          classOwnCredentials,
	"ExpiredToken":                classOwnCredentials,
	"ExpiredTokenException":       classOwnCredentials,
	"AuthFailure":                 classOwnCredentials,
	"OptInRequired":               classOwnCredentials,

	"ValidationError":             classRejected,
	"InvalidParameterValue":       classRejected,
	"InvalidParameterCombination": classRejected,
	"MalformedPolicyDocument":     classRejected,
	"PackedPolicyTooLarge":        classRejected,
	"RegionDisabledException":     classRejected,
}

// Operation names, as they appear in errors.
const (
	opAssumeRole        = "AssumeRole"
	opGetCallerIdentity = "GetCallerIdentity"
)

// classify turns an SDK error of op into a classified failure whose message
// holds no secret. Every non-transient error of GetCallerIdentity is CG3003:
// the credentials that signed it are the session the customer's role gave
// us, so whatever AWS refuses there is the role's doing.
func classify(op string, err error, secrets []string) error {
	var (
		apiErr  smithy.APIError
		respErr *awshttp.ResponseError
		sendErr *smithyhttp.RequestSendError
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
	case errors.As(err, &sendErr):
		return failure.Transient(Target, errors.New(redact(op+": network error: "+sendErr.Err.Error(), secrets)))
	case errors.As(err, &netErr):
		return failure.Transient(Target, errors.New(redact(op+": network error: "+netErr.Error(), secrets)))
	case !errors.As(err, &apiErr):
		if httpSt != 0 {
			// An answer that is not an AWS error document (a proxy's page, a
			// truncated body) is never the customer's doing.
			return failure.Transient(Target, fmt.Errorf("%s: unreadable answer (HTTP %d, request id %q)", op, httpSt, reqID))
		}
		return failure.Transient(Target, errors.New(truncate(redact(op+": "+err.Error(), secrets), maxMessage)))
	}

	code := apiErr.ErrorCode()
	msg := errors.New(truncate(redact(fmt.Sprintf("%s: %s (HTTP %d, request id %q): %s",
		op, code, httpSt, reqID, apiErr.ErrorMessage()), secrets), maxMessage))
	switch {
	case transientCodes[code] || httpSt >= 500 || httpSt == 429:
		return failure.Transient(Target, msg)
	case op == opGetCallerIdentity:
		return failure.Permanent(status.CG3003, Target, msg)
	}
	switch assumeRoleCodes[code] {
	case classDenied:
		return failure.Permanent(status.CG3002, Target, msg)
	case classOwnCredentials:
		return failure.Transient(Target, fmt.Errorf("%w: %w", ErrServiceCredentials, msg))
	case classRejected:
		return failure.Permanent(status.CG3000, Target, msg)
	}
	return failure.Transient(Target, fmt.Errorf("%w (unexpected error code)", msg))
}

// maxMessage bounds the text of an error built from an AWS answer (it is
// logged, and the answer's message can be anything).
const maxMessage = 1024

// truncate cuts s to at most n bytes on a rune boundary. Redact first:
// a cut secret would no longer match.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// redact replaces every non-empty secret in s, verbatim and URL-encoded (as
// an echoed request body would hold it), longest first so that no part of a
// longer secret survives the replacement of a shorter one.
func redact(s string, secrets []string) string {
	var forms []string
	for _, secret := range secrets {
		if secret != "" {
			forms = append(forms, secret, url.QueryEscape(secret), url.PathEscape(secret))
		}
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, "[redacted]")
	}
	return s
}
