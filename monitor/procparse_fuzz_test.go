package monitor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// The seeds are real /proc files of the development machine
// (testdata/proc: a QEMU process's stat and status, one of its vCPU
// threads' task stat and schedstat, loadavg, the three pressure files,
// meminfo), plus the live files of this machine when they exist.

func procSeed(f *testing.F, names ...string) {
	f.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", "proc", n))
		require.NoError(f, err)
		f.Add(b)
	}
}

func liveSeed(f *testing.F, paths ...string) {
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// checkProcErr: a refusal is a *ProcError naming the file, with a short,
// printable message (quoted input, never raw bytes).
func checkProcErr(t *testing.T, err error, file string) {
	t.Helper()
	var pe *ProcError
	require.True(t, errors.As(err, &pe), "%T %v", err, err)
	require.True(t, strings.HasPrefix(pe.File, file), "file %q, want %q", pe.File, file)
	require.True(t, utf8.ValidString(err.Error()), "%q", err.Error())
	require.NotContains(t, err.Error(), "\n")
	require.Less(t, len(err.Error()), 256, "%q", err.Error())
}

func FuzzProcStat(f *testing.F) {
	procSeed(f, "stat", "task-stat")
	liveSeed(f, "/proc/self/stat", "/proc/1/stat", "/proc/thread-self/stat")
	f.Add([]byte("1234 (CPU 0/TCG) R 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 7 0 100 4096 300 0 0"))
	f.Add([]byte("1 (a) b) R 1 2 3 4 5 6 7 8 9 10 -1 30 0 0 20 0 7 0 100 4096 300 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err != nil {
			checkProcErr(t, err, "stat")
			return
		}
		require.GreaterOrEqual(t, st.utime, int64(0))
		require.GreaterOrEqual(t, st.stime, int64(0))
		require.GreaterOrEqual(t, st.utime+st.stime, int64(0), "no overflow")
		require.GreaterOrEqual(t, st.threads, 0)
		require.GreaterOrEqual(t, st.rssPages, int64(0))
		require.NotEmpty(t, st.state)
		require.Contains(t, string(b), "("+st.comm+")")
	})
}

func FuzzProcStatus(f *testing.F) {
	procSeed(f, "status")
	liveSeed(f, "/proc/self/status", "/proc/thread-self/status")
	f.Add([]byte("Name:\tx\nTgid:\t-3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseStatusTgid(b)
		if err != nil {
			checkProcErr(t, err, "status")
			require.Contains(t, err.Error(), "Tgid")
			return
		}
		require.Positive(t, n)
	})
}

func FuzzProcSchedstat(f *testing.F) {
	procSeed(f, "schedstat")
	liveSeed(f, "/proc/self/schedstat", "/proc/thread-self/schedstat")
	f.Add([]byte("9223372036854775807 1 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseSchedstat(b)
		if err != nil {
			checkProcErr(t, err, "schedstat")
			return
		}
		require.GreaterOrEqual(t, n, int64(0))
	})
}

func FuzzProcLoadAvg(f *testing.F) {
	procSeed(f, "loadavg")
	liveSeed(f, "/proc/loadavg")
	f.Add([]byte("NaN 0.64 1.04 3/137 23044\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLoadAvg(b)
		if err != nil {
			checkProcErr(t, err, "loadavg")
			return
		}
		for _, v := range []float64{l.Load1, l.Load5, l.Load15} {
			require.GreaterOrEqual(t, v, 0.0)
			require.False(t, v != v, "NaN")
		}
		require.GreaterOrEqual(t, l.Runnable, 0)
		require.GreaterOrEqual(t, l.Threads, 0)
		require.GreaterOrEqual(t, l.LastPID, 0)
	})
}

func FuzzProcPressure(f *testing.F) {
	procSeed(f, "pressure-cpu", "pressure-memory", "pressure-io")
	liveSeed(f, "/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io")
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")) // cpu before 5.13: no full line
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePressure("cpu", b)
		if err != nil {
			checkProcErr(t, err, "pressure/cpu")
			return
		}
		require.NotNil(t, p.Some)
		for _, l := range []*PSILine{p.Some, p.Full} {
			if l == nil {
				continue
			}
			for _, v := range []float64{l.Avg10, l.Avg60, l.Avg300} {
				require.True(t, v >= 0 && v <= 100, "%v", v)
			}
		}
	})
}

func FuzzProcMeminfo(f *testing.F) {
	procSeed(f, "meminfo")
	liveSeed(f, "/proc/meminfo")
	f.Add([]byte("MemTotal: 1 kB\nMemFree: 2 kB\nMemTotal: 3 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMeminfo(b)
		if err != nil {
			checkProcErr(t, err, "meminfo")
		}
		for k, v := range m {
			require.Contains(t, meminfoKeys, k)
			require.GreaterOrEqual(t, v, int64(0))
		}
	})
}

// TestProcParsers: the real files decode to what they say; bad ones are
// refused naming the file and field.
func TestProcParsers(t *testing.T) {
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "proc", n))
		require.NoError(t, err)
		return b
	}
	st, err := parseStat(read("task-stat"))
	require.NoError(t, err)
	require.Equal(t, "qemu-system-x86", st.comm)
	require.Equal(t, "R", st.state)
	require.Equal(t, int64(379), st.utime)
	require.Equal(t, int64(15), st.stime)
	require.Equal(t, 5, st.threads)
	require.Equal(t, int64(51883), st.rssPages)
	tgid, err := parseStatusTgid(read("status"))
	require.NoError(t, err)
	require.Equal(t, 5319, tgid)
	ss, err := parseSchedstat(read("schedstat"))
	require.NoError(t, err)
	require.Equal(t, int64(3951432792+4340061155), ss)
	l, err := parseLoadAvg(read("loadavg"))
	require.NoError(t, err)
	require.Positive(t, l.Threads)
	require.Positive(t, l.LastPID)
	for _, k := range []string{"cpu", "memory", "io"} {
		p, err := parsePressure(k, read("pressure-"+k))
		require.NoError(t, err, k)
		require.NotNil(t, p.Some, k)
		require.NotNil(t, p.Full, k)
	}
	mi, err := parseMeminfo(read("meminfo"))
	require.NoError(t, err)
	require.Len(t, mi, len(meminfoKeys))
	require.Positive(t, mi["MemTotal"])

	for _, c := range []struct {
		err  error
		want string
	}{
		{second(parseStat([]byte("1 (a) R 1 2"))), "stat: 3 fields after comm, want at least 22"},
		{second(parseStat([]byte("no comm"))), "stat field 2 (comm): no parenthesised command name"},
		{second(parseStat([]byte("1 (a) R 1 2 3 4 5 6 7 8 9 10 x 30 0 0 20 0 7 0 100 4096 300 0"))), `stat field 14 (utime): "x" is not a decimal number`},
		{second(parseStat([]byte("1 (a) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0 20 0 -7 0 100 4096 300 0"))), "stat field 20 (num_threads): -7 is negative"},
		{second(parseStat([]byte("1 (a) R 1 2 3 4 5 6 7 8 9 10 9223372036854775807 1 0 0 20 0 7 0 100 4096 300 0"))), "overflows"},
		{second(parseStatusTgid([]byte("Name:\tx\n"))), "status Tgid: no Tgid line"},
		{second(parseStatusTgid([]byte("Tgid:\tzz\n"))), `status Tgid: "zz" is not a process id`},
		{second(parseSchedstat([]byte("1"))), "schedstat: 1 fields"},
		{second(parseSchedstat([]byte("1 -2 3"))), `schedstat field 2 (wait_ns): "-2"`},
		{second(parseLoadAvg([]byte("0.1 0.2 0.3 1/2"))), "loadavg: 4 fields, want 5"},
		{second(parseLoadAvg([]byte("0.1 Inf 0.3 1/2 3"))), `loadavg field 2 (load5): "Inf" is not a decimal number`},
		{second(parseLoadAvg([]byte("0.1 0.2 0.3 12 3"))), `loadavg field 4 (runnable/threads): "12" is not N/M`},
		{second(parsePressure("io", []byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=x avg300=0.00 total=0\n"))), `pressure/io full avg60: "x" is not a percentage`},
		{second(parsePressure("io", []byte("full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"))), "pressure/io some: no some line"},
		{second(parsePressure("io", []byte("some avg10=0.00 avg60=0.00 avg300=0.00\n"))), "pressure/io line 1 (some): 3 fields"},
		{second(parsePressure("io", []byte("half avg10=0.00\n"))), `pressure/io line 1: "half": want some or full`},
		{second(parseMeminfo([]byte("MemTotal: 12 MB\nMemFree: 1 kB\n"))), `meminfo MemTotal (line 1): "12 MB": want VALUE kB`},
		{second(parseMeminfo([]byte("MemTotal: 12 kB\n"))), "meminfo MemFree: missing"},
	} {
		require.Error(t, c.err, c.want)
		require.ErrorContains(t, c.err, c.want)
	}
}

func second[T any](_ T, err error) error { return err }

// TestCollectHostNamesUndecodableProc: CollectHost over a proc root with
// damaged files keeps what it read raw and lists one error per file,
// naming the file and field (it used to take them silently).
func TestCollectHostNamesUndecodableProc(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(body), 0o644))
	}
	write("loadavg", "0.5 0.4 0.3 1/x 99\n")
	write("pressure/cpu", "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n")
	write("pressure/io", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=-1 avg300=0.00 total=0\n")
	write("meminfo", "MemTotal: 1000 kB\nMemFree: lots kB\n")
	h := CollectHost(context.Background(), nil, HostOptions{Proc: root})
	require.Equal(t, "0.5 0.4 0.3 1/x 99", h.LoadAvg, "the raw line is kept")
	require.Nil(t, h.Load)
	require.Equal(t, PSI{Some: &PSILine{Avg10: 1, Avg60: 2, Avg300: 3, TotalUs: 4}}, h.PSI["cpu"])
	require.NotContains(t, h.PSI, "io")
	require.Equal(t, int64(1000), h.Memory["MemTotal"])
	require.Equal(t, []string{
		`loadavg field 4 (runnable/threads): "1/x" is not N/M`,
		`pressure/io full avg60: "-1" is not a percentage`,
		`meminfo MemFree (line 2): "lots" is not a non-negative decimal number`,
	}, h.Errors)
}
