package metrics

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/stretchr/testify/require"

	"github.com/acpidiag/acpidiag/fixtures"
)

// Azurite's well-known development account (documented by Azurite; not a
// secret).
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// azuriteBinary finds azurite-table: $ACPIDIAG_AZURITE, else the copy
// scripts/deps.sh installs into the cache (npm, azurite@3.35.0).
func azuriteBinary() (string, error) {
	if p := os.Getenv("ACPIDIAG_AZURITE"); p != "" {
		return p, nil
	}
	cache := os.Getenv("ACPIDIAG_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "acpidiag")
	}
	p := filepath.Join(cache, "azurite", "node_modules", ".bin", "azurite-table")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("azurite-table not installed (run scripts/deps.sh): %w", err)
	}
	return p, nil
}

// azurite is a running Azurite table service.
type azurite struct {
	Endpoint string // http://127.0.0.1:PORT/devstoreaccount1
	cmd      *exec.Cmd
}

// startAzurite starts a real Azurite table service on a free loopback port
// with in-memory persistence; the test's cleanup stops it. Without Azurite
// the test is skipped locally and fails under CI.
func startAzurite(t testing.TB) *azurite {
	t.Helper()
	bin, err := azuriteBinary()
	if err != nil {
		if fixtures.InCI() {
			t.Fatalf("Azurite required under CI: %v", err)
		}
		t.Skipf("Azurite not available: %v", err)
	}
	fixtures.RequireTool(t, "node")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--tableHost", "127.0.0.1", "--tablePort", fmt.Sprint(port),
		"--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "azurite.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	az := &azurite{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/%s", port, azuriteAccount), cmd: cmd}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "azurite.log"))
			t.Fatalf("Azurite exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "azurite.log"))
			t.Fatalf("Azurite did not listen on port %d within 60 s: %s", port, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return az
}

// SAS returns an account SAS token for Azurite's development account,
// signed with its well-known key, valid for the given time.
func (a *azurite) SAS(t testing.TB, perms aztables.AccountSASPermissions, valid time.Duration) string {
	t.Helper()
	cred, err := aztables.NewSharedKeyCredential(azuriteAccount, azuriteKey)
	require.NoError(t, err)
	// Azurite listens on http: the token must allow it (spr=https,http;
	// ServiceClient.GetAccountSASURL signs https only).
	qps, err := aztables.AccountSASSignatureValues{
		Protocol: aztables.SASProtocolHTTPSandHTTP, Permissions: perms.String(), Services: "t",
		ResourceTypes: aztables.AccountSASResourceTypes{Service: true, Container: true, Object: true}.String(),
		StartTime:     time.Now().Add(-time.Minute).UTC(), ExpiryTime: time.Now().Add(valid).UTC(),
	}.Sign(cred)
	require.NoError(t, err)
	u := a.Endpoint + "/?" + qps.Encode()
	pu, err := url.Parse(u)
	require.NoError(t, err)
	require.True(t, strings.Contains(pu.RawQuery, "sig="))
	return pu.RawQuery
}

// diagnostics returns the Diagnostics block pointing at this Azurite.
func (a *azurite) diagnostics(t testing.TB, sas string) Diagnostics {
	return Diagnostics{StorageAccount: azuriteAccount, StorageAccountSAS: SAS(sas), Endpoint: a.Endpoint,
		Metrics: &MetricsConfig{}}
}

var allPerms = aztables.AccountSASPermissions{Read: true, Write: true, Delete: true, List: true, Add: true, Create: true, Update: true}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
