package natsconn_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/natsconn"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// start runs an embedded nats-server on 127.0.0.1, a random port.
func start(t *testing.T, opts *server.Options) (*server.Server, string) {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s, s.ClientURL()
}

func quiet() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// use connects with c, waits until the connection is up or refused, and
// proves it works with a request through the server.
func use(t *testing.T, c config.NATS) (*nats.Conn, error) {
	t.Helper()
	nc, err := natsconn.Connect(c, "cloudoreg-test", quiet())
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		// RetryOnFailedConnect: Connect does not fail, the connection keeps
		// trying and records why it is refused.
		if err := nc.LastError(); err != nil {
			return nc, err
		}
		if time.Now().After(deadline) {
			return nc, errors.New("neither connected nor refused")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sub, err := nc.SubscribeSync("cloudoreg.test")
	if err != nil {
		return nc, err
	}
	if err := nc.Publish("cloudoreg.test", []byte("hello")); err != nil {
		return nc, err
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		return nc, err
	}
	if string(m.Data) != "hello" {
		return nc, fmt.Errorf("got %q", m.Data)
	}
	return nc, nil
}

func mustUse(t *testing.T, c config.NATS) {
	t.Helper()
	if _, err := use(t, c); err != nil {
		t.Fatalf("%+v: %v", c, err)
	}
}

func mustBeRefused(t *testing.T, c config.NATS, want string) {
	t.Helper()
	_, err := use(t, c)
	if err == nil {
		t.Fatalf("%+v connected", c)
	}
	if !strings.Contains(strings.ToLower(err.Error()), want) {
		t.Errorf("refused with %v, want %q", err, want)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUserPassword(t *testing.T) {
	_, url := start(t, &server.Options{Username: "cloudoreg", Password: "right"})
	mustUse(t, config.NATS{URL: url, User: "cloudoreg", Password: "right"})
	// NATS_PASSWORD_FILE wins over NATS_PASSWORD.
	mustUse(t, config.NATS{URL: url, User: "cloudoreg", Password: "wrong", PasswordFile: "right\n"})
	mustBeRefused(t, config.NATS{URL: url, User: "cloudoreg", Password: "wrong"}, "authorization violation")
	mustBeRefused(t, config.NATS{URL: url}, "authorization violation")
	// A token comes before user and password.
	mustBeRefused(t, config.NATS{URL: url, Token: "x", User: "cloudoreg", Password: "right"}, "authorization violation")
}

func TestToken(t *testing.T) {
	_, url := start(t, &server.Options{Authorization: "s3cr3t-token"})
	mustUse(t, config.NATS{URL: url, Token: "s3cr3t-token"})
	mustUse(t, config.NATS{URL: url, Token: "wrong", TokenFile: "s3cr3t-token\n"})
	mustBeRefused(t, config.NATS{URL: url, Token: "wrong"}, "authorization violation")
}

func TestNKey(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	_, url := start(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	mustUse(t, config.NATS{URL: url, NKeySeedFile: writeFile(t, "cloudoreg.nk", string(seed))})

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	mustBeRefused(t, config.NATS{URL: url, NKeySeedFile: writeFile(t, "other.nk", string(otherSeed))}, "authorization violation")

	if _, err := natsconn.Options(config.NATS{NKeySeedFile: filepath.Join(t.TempDir(), "missing.nk")}, "x", quiet()); err == nil {
		t.Error("a missing seed file is not an error")
	}
}

// A .creds file (user JWT and seed) against a server in operator mode with
// an in-memory account resolver.
func TestCredsFile(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	operatorPub, _ := operator.PublicKey()
	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	accountJWT, err := jwt.NewAccountClaims(accountPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accountPub, accountJWT); err != nil {
		t.Fatal(err)
	}
	_, url := start(t, &server.Options{TrustedKeys: []string{operatorPub}, AccountResolver: resolver})

	creds := func(signer nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		userSeed, _ := user.Seed()
		userJWT, err := jwt.NewUserClaims(userPub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(userJWT, userSeed)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, "cloudoreg.creds", string(b))
	}
	// The creds file comes first, before a (wrong) token.
	mustUse(t, config.NATS{URL: url, CredsFile: creds(account), Token: "wrong"})

	unknown, _ := nkeys.CreateAccount()
	mustBeRefused(t, config.NATS{URL: url, CredsFile: creds(unknown)}, "authorization violation")
}

func TestTLSWithCAFile(t *testing.T) {
	p := testkit.NewPKI(t, "nats")
	_, url := start(t, &server.Options{
		TLS:       true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.Server}, MinVersion: tls.VersionTLS12},
		Username:  "cloudoreg",
		Password:  "right",
	})
	mustUse(t, config.NATS{URL: url, User: "cloudoreg", Password: "right", CAFile: writeFile(t, "ca.pem", p.CAPEM)})

	other := testkit.NewPKI(t, "impostor")
	mustBeRefused(t, config.NATS{URL: url, User: "cloudoreg", Password: "right", CAFile: writeFile(t, "other.pem", other.CAPEM)}, "certificate")
	mustBeRefused(t, config.NATS{URL: url, User: "cloudoreg", Password: "right"}, "certificate") // system roots
}

// A refused connection keeps trying (nats.go would otherwise give up after
// the same auth error twice) and comes up once the server accepts it, e.g.
// after the server's credentials are fixed.
func TestKeepsTryingAfterAuthErrors(t *testing.T) {
	opts := &server.Options{Username: "cloudoreg", Password: "old"}
	s, url := start(t, opts)
	refusals := &refusalCounter{}
	s.SetLoggerV2(refusals, false, false, false)
	nc, err := use(t, config.NATS{URL: url, User: "cloudoreg", Password: "new"})
	if err == nil {
		t.Fatal("connected with the wrong password")
	}
	// nats.go gives up after the same auth error twice unless told not to:
	// wait until the server has refused the client more often than that.
	deadline := time.Now().Add(20 * time.Second)
	for refusals.count() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the server refused the client only %d times", refusals.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := nc.Status(); st == nats.CLOSED {
		t.Fatal("the connection gave up after repeated auth errors")
	}

	fixed := opts.Clone()
	fixed.Password = "new"
	if err := s.ReloadOptions(fixed); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected after the server accepted the password: %v (%v)", nc.Status(), nc.LastError())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refusalCounter is a nats-server logger that counts refused logins.
type refusalCounter struct {
	mu sync.Mutex
	n  int
}

func (r *refusalCounter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *refusalCounter) Errorf(format string, v ...any) {
	if strings.Contains(fmt.Sprintf(format, v...), server.ErrAuthentication.Error()) {
		r.mu.Lock()
		r.n++
		r.mu.Unlock()
	}
}
func (r *refusalCounter) Noticef(string, ...any) {}
func (r *refusalCounter) Warnf(string, ...any)   {}
func (r *refusalCounter) Fatalf(string, ...any)  {}
func (r *refusalCounter) Debugf(string, ...any)  {}
func (r *refusalCounter) Tracef(string, ...any)  {}
