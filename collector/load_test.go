package collector

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadBundles packs n distinct bundles (ids differ) of size bytes of
// artifacts each (the manifest's total_bytes, as the monitor counts a
// bundle): a real panic's erst.txt plus console text made of random hex
// lines, which gzip shrinks to only ~55% (real console text shrinks far
// more).
func loadBundles(b *testing.B, n, size int, kind string) [][]byte {
	erst := erstText(b, "q35_sysrq_none")
	var console strings.Builder
	if kind == "hex" {
		raw := make([]byte, (size-len(erst))*64/2/88)
		rand.Read(raw)
		h := hex.EncodeToString(raw)
		for i := 0; i+64 <= len(h); i += 64 {
			fmt.Fprintf(&console, "[%9d.%06d] app: %s\n", i/64, i%1000000, h[i:i+64])
		}
	} else {
		// The real guest's kernel log lines again and again, each with
		// its own timestamp.
		lines := strings.Split(erst, "\n")
		for i := 0; console.Len() < size-len(erst); i++ {
			l := lines[i%len(lines)]
			if j := strings.IndexByte(l, ']'); j > 0 {
				l = l[j+1:]
			}
			fmt.Fprintf(&console, "[%5d.%06d]%s\n", i/1000, (i*7919)%1000000, l)
		}
	}
	out := make([][]byte, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			tb := testBundle{ID: fmt.Sprintf("load-%06d", i), VM: fmt.Sprintf("vm%03d", i%50), Files: map[string]string{"erst.txt": erst, "console.txt": console.String()}}
			out[i] = tb.pack(b)
		}(i)
	}
	wg.Wait()
	return out
}

// loadClients is how many clients POST at once: monitors of a fleet post
// independently; with fsync on every bundle, the store's throughput is
// the number in flight over the fsync latency, which a disk shared with
// other work makes long.
const loadClients = 32

// BenchmarkCollectorLoad posts 1 MiB bundles (1 MiB of artifacts) over the
// loopback interface to a collector with the built-in analyzers on, from
// loadClients concurrent clients; every bundle is verified, fsynced, stored and
// analysed. Bounded: b.N bundles (run with -benchtime=Nx, e.g. 600x).
// The metric bundles/s is the number (target 100).
//
// Two contents: "hex", console lines of random hex (gzip keeps ~47%: the
// costliest to inflate), and "kernel-log", the real guest's kernel log
// lines repeated with distinct timestamps (what console and SysRq
// artifacts hold).
func BenchmarkCollectorLoad(b *testing.B) {
	for _, kind := range []string{"hex", "kernel-log"} {
		b.Run(kind, func(b *testing.B) { benchmarkLoad(b, kind) })
	}
}

func benchmarkLoad(b *testing.B, kind string) {
	bundles := loadBundles(b, b.N, 1<<20, kind)
	var packed int64
	for _, x := range bundles {
		packed += int64(len(x))
	}
	st, err := OpenStore(b.TempDir(), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(NewServer(st, ServerOptions{}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: loadClients}, Timeout: time.Minute}
	var next, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.SetBytes(packed / int64(b.N))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < loadClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(bundles)) {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/bundles", bytes.NewReader(bundles[i]))
				req.Header.Set("Idempotency-Key", fmt.Sprintf("load-%06d", i))
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 || st.Len() != b.N {
		b.Fatalf("%d failed, %d stored of %d", failed.Load(), st.Len(), b.N)
	}
	if inc := st.Incidents(""); len(inc) > 0 && inc[0].Class != ClassPanic {
		b.Fatalf("analyzers did not run: %+v", inc[0])
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "bundles/s")
	b.ReportMetric(float64(packed)/float64(b.N)/(1<<20), "packed-MiB/bundle")
	var unpacked int64
	for _, inc := range st.Incidents("")[:1] {
		d, _ := st.Incident(inc.ID)
		unpacked = d.Manifest.TotalBytes
		for _, a := range d.Manifest.Artifacts {
			unpacked += a.Size
		}
	}
	b.ReportMetric(float64(unpacked)/(1<<20), "MiB/bundle")
}
