package hostreader

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/acpidiag/acpidiag/region"
)

// FuzzDecodeRegion: arbitrary bytes as a region image must give a snapshot
// and a verdict (or a *RegionError), never a panic, and every printed form
// must be free of raw control bytes from the guest.
func FuzzDecodeRegion(f *testing.F) {
	for _, p := range regionFixtures(f) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, int64(0))
	}
	now := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	img := newImage(4096)
	setEcho(img, now.Add(-time.Second))
	setHostStamp(img, now)
	setSlot(img, 1, 3, 100, "app\x1b\n")
	f.Add(img, int64(5))
	f.Add(img[:region.HeaderSize], int64(1<<40))
	f.Add(img[:region.HeaderSize-1], int64(0))
	f.Add(make([]byte, 4096), int64(0))
	odd := append([]byte(nil), img...)
	putWord(odd, region.Seq.Offset, 1)
	putWord(odd, region.EchoHi.Offset, 0xffffffff)
	f.Add(odd, int64(-1))

	f.Fuzz(func(t *testing.T, data []byte, dt int64) {
		at := now.Add(time.Duration(dt))
		s, err := DecodeRegion(data, at)
		if err != nil {
			var re *RegionError
			if !errors.As(err, &re) {
				t.Fatalf("error is not a *RegionError: %v", err)
			}
			if len(data) >= region.HeaderSize && re.Field != "region_size" {
				t.Fatalf("unexpected refusal of %d bytes: %v", len(data), err)
			}
			return
		}
		if len(data) < region.HeaderSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		ev := &PanicEvidence{Source: "fuzz", Detail: string(data[:min(len(data), 40)])}
		for _, v := range []Verdict{Assess(s, VerdictConfig{}, nil), Assess(s, VerdictConfig{K: 1000}, ev)} {
			checkPrintable(t, v)
		}
		// Two snapshots through a Tracker, the second of a changed image.
		var tr Tracker
		tr.Update(s)
		mut := append([]byte(nil), data...)
		for i := range mut[:region.HeaderSize] {
			mut[i] ^= byte(dt)
		}
		if s2, err := DecodeRegion(mut, at.Add(time.Second)); err == nil {
			checkPrintable(t, tr.Update(s2))
		}
	})
}

func checkPrintable(t *testing.T, v Verdict) {
	t.Helper()
	if v.State == StateNone || v.State > StateUnknown {
		t.Fatalf("bad state %d", v.State)
	}
	str := v.String()
	var sb strings.Builder
	if err := v.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(js) {
		t.Fatalf("invalid JSON %q", js)
	}
	for _, out := range []string{str, sb.String()} {
		for _, c := range []byte(out) {
			if (c < 0x20 && c != '\n') || c == 0x7f {
				t.Fatalf("raw control byte %#x in output %q", c, out)
			}
		}
	}
}
