// Command serve runs the STS stand-in on a loopback port for tests in other
// modules, which cannot import the stand-in (it is internal to scripts/).
// It prints "listening on http://<addr>" on its first line of stdout, serves
// until killed and logs calls to stderr.
//
//	go build -o sts-standin ./testdata/serve   (from the package directory)
//	sts-standin -trust ../../../sts-trust.json
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/cloudoreg/cloudoreg/scripts/internal/standin/sts"
	"github.com/sirupsen/logrus"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	trustFile := flag.String("trust", "", "trust table JSON file (empty: no roles)")
	flag.Parse()

	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetFormatter(&logrus.JSONFormatter{})

	var trust sts.Trust
	if *trustFile != "" {
		t, err := sts.LoadTrust(*trustFile)
		if err != nil {
			log.WithError(err).Fatal("load trust table")
		}
		trust = t
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.WithError(err).Fatal("listen")
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	if err := http.Serve(ln, sts.New(trust, log)); err != nil {
		log.WithError(err).Fatal("serve")
	}
}
