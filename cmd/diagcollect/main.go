// Command diagcollect is the reference collector for incident bundles
// (docs/collector.md). All the work is done by package collector.
//
//	diagcollect serve   --listen ADDR --store DIR [--token-file F] [--analyzer EXE]... [--analyzer-timeout D] [--no-analyzers]
//	diagcollect analyze [--json] [--analyzer EXE]... DIR
//
// analyze re-runs the analyzers on every bundle of a store directory, or
// on one unpacked bundle directory, and prints the diagnoses.
//
// Exit status: 0 ok, 1 runtime error, 2 usage error.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/acpidiag/acpidiag/collector"
	"github.com/acpidiag/acpidiag/hostreader"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage:
  diagcollect serve   --listen ADDR --store DIR [--token-file F] [--analyzer EXE]... [--analyzer-timeout 30s] [--no-analyzers]
  diagcollect analyze [--json] [--analyzer EXE]... DIR

serve    receives bundles (POST /api/bundles), verifies, stores each once,
         analyses them, and serves the JSON API and the pages (/).
analyze  re-runs the analyzers on a store directory or one bundle directory.

Exit status: 0 ok, 1 error, 2 usage.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	os.Exit(code)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// run is the CLI; ready, when not nil, gets the listening address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr, ready)
	case "analyze":
		return cmdAnalyze(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "diagcollect: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

func analyzers(exes []string, timeout time.Duration, none bool) []collector.Analyzer {
	if none {
		return nil
	}
	as := collector.Builtin()
	for _, e := range exes {
		as = append(as, collector.ExecAnalyzer{Path: e, Timeout: timeout})
	}
	return as
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) int {
	fs := flag.NewFlagSet("diagcollect serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on (HOST:PORT)")
	store := fs.String("store", "", "store directory")
	tokenFile := fs.String("token-file", "", "file with the bearer token POST must carry")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	tlsKey := fs.String("tls-key", "", "the certificate's key (PEM)")
	clientCA := fs.String("client-ca", "", "require client certificates signed by these CAs (PEM; needs --tls-cert)")
	var exes multi
	fs.Var(&exes, "analyzer", "custom analyzer executable (repeatable)")
	timeout := fs.Duration("analyzer-timeout", 30*time.Second, "timeout of each custom analyzer")
	none := fs.Bool("no-analyzers", false, "store without analysing")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "diagcollect serve: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *listen == "" || *store == "" {
		fmt.Fprintln(stderr, "diagcollect serve: --listen and --store are required")
		return exitUsage
	}
	if (*tlsCert == "") != (*tlsKey == "") || (*clientCA != "" && *tlsCert == "") {
		fmt.Fprintln(stderr, "diagcollect serve: --tls-cert and --tls-key go together; --client-ca needs them")
		return exitUsage
	}
	tlsConfig, err := collector.ServerTLS(*tlsCert, *tlsKey, *clientCA)
	if err != nil {
		fmt.Fprintf(stderr, "diagcollect serve: %v\n", err)
		return exitError
	}
	var opts collector.ServerOptions
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "diagcollect serve: --token-file: %v\n", err)
			return exitError
		}
		opts.Token = strings.TrimSpace(string(b))
	}
	st, err := collector.OpenStore(*store, collector.StoreOptions{Analyzers: analyzers(exes, *timeout, *none), NoAnalyzers: *none})
	if err != nil {
		fmt.Fprintf(stderr, "diagcollect serve: %v\n", err)
		return exitError
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "diagcollect serve: %v\n", err)
		return exitError
	}
	// The server's own complaints (a refused TLS handshake, a client that
	// hung up) go to this command's stderr, not to the process-wide log.
	srv := &http.Server{Handler: collector.NewServer(st, opts), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig,
		ErrorLog: log.New(stderr, "diagcollect serve: ", log.LstdFlags)}
	scheme := "http"
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
		scheme = "https"
	}
	fmt.Fprintf(stdout, "diagcollect: listening on %s://%s, store %s (%d bundles)\n", scheme, ln.Addr(), *store, st.Len())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return exitOK
	case err := <-errc:
		fmt.Fprintf(stderr, "diagcollect serve: %v\n", err)
		return exitError
	}
}

func cmdAnalyze(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagcollect analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the analyses as JSON")
	var exes multi
	fs.Var(&exes, "analyzer", "custom analyzer executable (repeatable)")
	timeout := fs.Duration("analyzer-timeout", 30*time.Second, "timeout of each custom analyzer")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "diagcollect analyze: want one directory (a store or a bundle)")
		return exitUsage
	}
	dir := fs.Arg(0)
	as := analyzers(exes, *timeout, false)
	var out []collector.Analysis
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		a, err := collector.AnalyzeDir(ctx, dir, as)
		if err != nil {
			fmt.Fprintf(stderr, "diagcollect analyze: %v\n", err)
			return exitError
		}
		out = append(out, a)
	} else if _, err := os.Stat(filepath.Join(dir, "bundles")); err == nil {
		st, err := collector.OpenStore(dir, collector.StoreOptions{Analyzers: as})
		if err == nil {
			out, err = st.Reanalyze(ctx)
		}
		if err != nil {
			fmt.Fprintf(stderr, "diagcollect analyze: %v\n", err)
			return exitError
		}
	} else {
		fmt.Fprintf(stderr, "diagcollect analyze: %s: neither a bundle (manifest.json) nor a store (bundles/)\n", dir)
		return exitError
	}
	if *asJSON {
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	for _, a := range out {
		d := a.Diagnosis
		fmt.Fprintf(stdout, "%s  %-14s %3.0f%%  %s\n", a.ID, d.Class, d.Confidence*100, hostreader.EscapeLog(d.Summary))
		for _, e := range d.Evidence {
			fmt.Fprintf(stdout, "    evidence %s:%d-%d\n", e.Artifact, e.First, e.Last)
		}
		for _, e := range a.Errors {
			fmt.Fprintf(stdout, "    analyzer error: %s\n", hostreader.EscapeLog(e))
		}
	}
	if len(out) == 0 {
		fmt.Fprintln(stdout, "no bundle")
	}
	return exitOK
}
