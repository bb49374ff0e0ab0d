package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/fixtures"
	"github.com/acpidiag/acpidiag/monitor"
)

// pki writes a CA and two certificates it signs (server for 127.0.0.1,
// client) as PEM files into dir.
func pki(t *testing.T, dir string) {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	caKey := key()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	write("ca.pem", "CERTIFICATE", caDER)
	for i, c := range []struct {
		name string
		ext  x509.ExtKeyUsage
	}{{"server", x509.ExtKeyUsageServerAuth}, {"client", x509.ExtKeyUsageClientAuth}} {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: c.name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{c.ext}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		write(c.name+".pem", "CERTIFICATE", der)
		kb, _ := x509.MarshalECPrivateKey(k)
		write(c.name+".key", "EC PRIVATE KEY", kb)
	}
}

// TestMutualTLS: diagcollect serves HTTPS and requires a client
// certificate; the monitor's http sink with cert_file, key_file and
// ca_file delivers; without the client certificate it is refused and
// keeps the bundle spooled.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki(t, dir)
	store := filepath.Join(dir, "store")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	var out bytes.Buffer
	var errb fixtures.SyncBuffer // the server logs refused handshakes here while the test reads it
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--store", store, "--tls-cert", filepath.Join(dir, "server.pem"),
			"--tls-key", filepath.Join(dir, "server.key"), "--client-ca", filepath.Join(dir, "ca.pem")}, &out, &errb, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("serve: %d %s", code, errb.String())
	}
	bdir := filepath.Join(dir, "20261129T100000.000Z-vm1-s-abcdef")
	os.MkdirAll(bdir, 0o755)
	man := monitor.Manifest{Schema: 1, ID: filepath.Base(bdir), Created: time.Now().UTC(), Trigger: "manual", VM: monitor.ManifestVM{Name: "vm1"}, Artifacts: []monitor.Artifact{}}
	b, _ := json.Marshal(&man)
	os.WriteFile(filepath.Join(bdir, "manifest.json"), b, 0o644)
	bundle := &monitor.Bundle{ID: man.ID, Dir: bdir, Manifest: &man}
	url := "https://" + addr + "/api/bundles"

	noCert, err := monitor.NewHTTPSink(monitor.SinkConfig{Kind: "http", URL: url, Spool: filepath.Join(dir, "spool1"), CAFile: filepath.Join(dir, "ca.pem"), MaxBackoff: "200ms"})
	if err != nil {
		t.Fatal(err)
	}
	defer noCert.Close()
	noCert.Deliver(ctx, bundle)
	deadline := time.Now().Add(10 * time.Second)
	for noCert.Status().LastError == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Under TLS 1.3 the client finishes its half of the handshake before
	// the server checks for a certificate, so what the client sees is
	// either the server's "certificate required" alert or a connection
	// closed under its first write, by timing. The server's side is the
	// one that says why.
	if st := noCert.Status(); st.Delivered != 0 || st.Queued != 1 || st.LastError == "" {
		t.Errorf("without a client certificate: %+v", st)
	}
	for !strings.Contains(errb.String(), "didn't provide a certificate") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := errb.String(); !strings.Contains(s, "didn't provide a certificate") {
		t.Errorf("the server's log does not say the certificate was missing: %q", s)
	}

	withCert, err := monitor.NewHTTPSink(monitor.SinkConfig{Kind: "http", URL: url, Spool: filepath.Join(dir, "spool2"), CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer withCert.Close()
	if _, err := withCert.Deliver(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := withCert.Spool().Flush(fctx); err != nil {
		t.Fatal(err, withCert.Status().LastError)
	}
	if _, err := os.Stat(filepath.Join(store, "bundles", man.ID, "manifest.json")); err != nil {
		t.Errorf("not stored: %v", err)
	}
	cancel()
	<-done
}
