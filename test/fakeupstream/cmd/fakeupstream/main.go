// Command fakeupstream serves the test HTTPS upstream (package
// fakeupstream) until SIGTERM or SIGINT:
//
//	fakeupstream -dir DIR [-names a,b] [-add-names c,d] [-client-ca F]
//	             [-require-client-cert] [-http1] [-listen 127.0.0.1:0]
//
// It writes DIR/ca.pem, appends one JSON line per request to DIR/log.jsonl
// and, once listening, writes DIR/ready.json ({addr, port, caPath, logPath,
// pid, names}). With -gen-client CN it instead writes a client CA and client
// certificate for mTLS tests into DIR and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aivault/aivault/test/fakeupstream"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(args []string) int {
	fs := flag.NewFlagSet("fakeupstream", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for ca.pem, log.jsonl and ready.json (required)")
	names := fs.String("names", "", "comma-separated DNS names for the leaf certificate (default: the registry hosts)")
	addNames := fs.String("add-names", "", "comma-separated DNS names added to the list")
	clientCA := fs.String("client-ca", "", "PEM CA that client certificates must chain to")
	requireClient := fs.Bool("require-client-cert", false, "refuse handshakes without a client certificate")
	http1 := fs.Bool("http1", false, "disable HTTP/2")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	genClient := fs.String("gen-client", "", "write a client CA and certificate with this common name into -dir, then exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "fakeupstream: usage: fakeupstream -dir DIR [flags]")
		fs.PrintDefaults()
		return 2
	}
	if *genClient != "" {
		b, err := fakeupstream.WriteClientBundle(*dir, *genClient)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeupstream:", err)
			return 1
		}
		fmt.Printf("ca=%s\ncert=%s\nkey=%s\nsubject=%s\n", b.CAPath, b.CertPath, b.KeyPath, b.Subject)
		return 0
	}
	cfg := fakeupstream.Config{
		Dir:               *dir,
		Names:             splitList(*names),
		Listen:            *listen,
		ClientCAFile:      *clientCA,
		RequireClientCert: *requireClient,
		HTTP1Only:         *http1,
	}
	if extra := splitList(*addNames); len(extra) > 0 {
		if len(cfg.Names) == 0 {
			cfg.Names = fakeupstream.DefaultNames()
		}
		cfg.Names = append(cfg.Names, extra...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := fakeupstream.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeupstream:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "fakeupstream: serving on %s (pid %d)\n", srv.Addr(), os.Getpid())
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "fakeupstream: close:", err)
		return 1
	}
	return 0
}
