package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// issueExample is the configuration of issue 10, verbatim.
const issueExample = `{
  "vms": [{"name": "web", "labels": {"app": "nginx"},
           "qmp": "/run/vm/web/qmp.sock", "serial": "/run/vm/web/serial.sock",
           "region": "/run/vm/web/region", "erst": "/run/vm/web/erst"}],
  "scenarios": [{"name": "uptime", "vms": ["web"], "match": {"app": "nginx"},
                 "probe": {"kind": "console", "send": "uptime", "expect": "load average"},
                 "every": "10s", "timeout": "3s", "failures": 2, "cooldown": "10m",
                 "diagnostics": ["sysrq:t", "sysrq:w", "sysrq:l", "registers", "qmp", "host",
                                 "console", "region", "erst"]}],
  "sinks": [{"kind": "dir", "path": "/var/lib/acpidiag/reports"}]
}`

func TestIssueExampleChecks(t *testing.T) {
	c, err := ParseConfig([]byte(issueExample))
	require.NoError(t, err)
	p, err := Check(c, CheckOptions{})
	require.NoError(t, err)
	require.Len(t, p.Scenarios, 1)
	s := p.Scenarios[0]
	require.Equal(t, 2, s.Failures)
	require.Equal(t, "10s", s.Every.String())
	require.True(t, s.Expect.MatchString(" load average: 0.00"))
	require.Len(t, s.Diagnostics, 9)
	require.Equal(t, "sysrq:t", s.Diagnostics[0].String())
	// The sockets do not exist: warnings, not errors.
	var paths []string
	for _, w := range p.Warnings {
		paths = append(paths, w.Path)
	}
	require.Contains(t, paths, "vms[0].qmp")
	require.Contains(t, paths, "vms[0].serial")
}

// checkErr parses and checks cfg and returns the error's field paths.
func checkErr(t *testing.T, cfg string) map[string]string {
	t.Helper()
	c, err := ParseConfig([]byte(cfg))
	if err == nil {
		_, err = Check(c, CheckOptions{NoFileChecks: true})
	}
	var ce *ConfigError
	require.True(t, errors.As(err, &ce), "want a *ConfigError, got %v", err)
	out := map[string]string{}
	for _, fe := range ce.Errors {
		if _, dup := out[fe.Path]; !dup {
			out[fe.Path] = fe.Msg
		}
	}
	return out
}

const sinkOK = `"sinks": [{"kind": "dir", "path": "/tmp/x"}]`

func TestCheckErrorsNameKeyPaths(t *testing.T) {
	for _, tc := range []struct {
		name, cfg, path, msg string
	}{
		{"unknown probe kind", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"ping"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe.kind", `unknown probe kind "ping"`},
		{"negative duration", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"region"},"every":"-5s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].every", "must be positive"},
		{"bad duration", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"region"},"every":"10","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].every", "not a duration"},
		{"timeout longer than every", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"region"},"every":"1s","timeout":"3s"}],` + sinkOK + `}`,
			"scenarios[0].timeout", "longer than every"},
		{"negative cooldown", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"region"},"every":"1s","timeout":"1s","cooldown":"-1m"}],` + sinkOK + `}`,
			"scenarios[0].cooldown", "negative"},
		{"unknown key", `{"vms":[{"name":"a","regoin":"/r"}],` + sinkOK + `}`,
			"vms[0].regoin", "unknown key"},
		{"unknown probe key", `{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"tcp","adress":"x"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe.adress", "unknown key"},
		{"wrong type", `{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"exec","command":"ls"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe.command", "want a []string"},
		{"unknown top-level key", `{"vm":[],` + sinkOK + `}`, "vm", "unknown key"},
		{"missing path", `{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"console","send":"uptime","expect":"load"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe", `needs "serial"`},
		{"diagnostic needs a path", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"region"},"every":"1s","timeout":"1s","diagnostics":["host","sysrq:t"]}],` + sinkOK + `}`,
			"scenarios[0].diagnostics[1]", `needs "qmp"`},
		{"unknown diagnostic", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"region"},"every":"1s","timeout":"1s","diagnostics":["coredump"]}],` + sinkOK + `}`,
			"scenarios[0].diagnostics[0]", `unknown diagnostic "coredump"`},
		{"bad sysrq key", `{"vms":[{"name":"a","qmp":"/q","serial":"/s"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"qmp"},"every":"1s","timeout":"1s","diagnostics":["sysrq:c"]}],` + sinkOK + `}`,
			"scenarios[0].diagnostics[0]", `sysrq key "c"`},
		{"memory off", `{"vms":[{"name":"a","qmp":"/q"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"qmp"},"every":"1s","timeout":"1s","diagnostics":["memory"]}],` + sinkOK + `}`,
			"scenarios[0].diagnostics[0]", "limits.memory_bytes"},
		{"bad regexp", `{"vms":[{"name":"a","serial":"/s"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"console","send":"x","expect":"("},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe.expect", "bad regular expression"},
		{"unknown vm", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["b"],"probe":{"kind":"region"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].vms[0]", `no VM named "b"`},
		{"duplicate vm", `{"vms":[{"name":"a"},{"name":"a"}],` + sinkOK + `}`, "vms[1].name", "also the name of vms[0]"},
		{"no binding", `{"vms":[{"name":"a"}],"scenarios":[{"name":"s","probe":{"kind":"tcp","address":"127.0.0.1:1"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0]", "binds no VM"},
		{"bad tcp address", `{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"tcp","address":"localhost"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe.address", "host:port"},
		{"slot without tag", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"slot"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe", `"tag" or "index"`},
		{"slot index range", `{"vms":[{"name":"a","region":"/r"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"slot","index":9},"every":"1s","timeout":"1s"}],` + sinkOK + `}`,
			"scenarios[0].probe.index", "want 0-7"},
		{"no sinks", `{"vms":[{"name":"a"}]}`, "sinks", "at least one sink"},
		{"unknown sink", `{"sinks":[{"kind":"s3","path":"x"}]}`, "sinks[0].kind", `unknown sink kind "s3"`},
		{"invalid JSON", `{"vms": [}`, "$", "invalid JSON at byte"},
		{"bad vm name", `{"vms":[{"name":"a/b"}],` + sinkOK + `}`, "vms[0].name", "file name"},
		{"bad loglevel", `{"limits":{"restore_loglevel":12},` + sinkOK + `}`, "limits.restore_loglevel", "0-9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkErr(t, tc.cfg)
			msg, ok := errs[tc.path]
			require.True(t, ok, "want an error at %s, got %v", tc.path, errs)
			require.Contains(t, msg, tc.msg)
		})
	}
}

func TestCheckWarnings(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"vms":[{"name":"a","labels":{"app":"db"},"qmp":"` + filepath.Join(dir, "qmp") + `"}],
	  "scenarios":[{"name":"s","match":{"app":"web"},"probe":{"kind":"qmp"},"every":"1s","timeout":"1s"}],` + sinkOK + `}`
	c, err := ParseConfig([]byte(cfg))
	require.NoError(t, err)
	p, err := Check(c, CheckOptions{})
	require.NoError(t, err, "a selector matching nothing and a missing socket are not errors")
	var got []string
	for _, w := range p.Warnings {
		got = append(got, w.String())
	}
	require.Contains(t, strings.Join(got, "\n"), "scenarios[0].match: selector matches no VM")
	require.Contains(t, strings.Join(got, "\n"), "vms[0].qmp: "+filepath.Join(dir, "qmp")+" does not exist yet (waited for)")
}

func TestReservedTopLevelKeys(t *testing.T) {
	c, err := ParseConfig([]byte(`{"azure": {"account": "x", "anything": [1,2]}, "ManifestPassthrough": {"k": "v"}, ` + sinkOK + `}`))
	require.NoError(t, err, "the metrics helper's key must not be rejected")
	require.JSONEq(t, `{"account": "x", "anything": [1,2]}`, string(c.Azure))
	// Check interprets the tuple with the metrics package's parser
	// (metrics_test.go): an unknown key is an error at its key path.
	_, err = Check(c, CheckOptions{})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Errors, 1)
	require.Equal(t, "azure", ce.Errors[0].Path)
	require.Contains(t, ce.Errors[0].Msg, `unknown key "account"`)
	// Other keys passed through by Ops are left alone.
	c, err = ParseConfig([]byte(`{"ManifestPassthrough": {"k": "v"}, ` + sinkOK + `}`))
	require.NoError(t, err)
	_, err = Check(c, CheckOptions{})
	require.NoError(t, err)
}

func TestDiagSpecForms(t *testing.T) {
	script := filepath.Join(t.TempDir(), "collect.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755))
	cfg := `{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"tcp","address":"127.0.0.1:9"},
	  "every":"1s","timeout":"1s","diagnostics":["host","script:` + script + `",{"kind":"script","command":["` + script + `","x"],"timeout":"2s"}]}],` + sinkOK + `}`
	c, err := ParseConfig([]byte(cfg))
	require.NoError(t, err)
	p, err := Check(c, CheckOptions{})
	require.NoError(t, err)
	d := p.Scenarios[0].Diagnostics
	require.Equal(t, []string{script}, d[1].Command)
	require.Equal(t, []string{script, "x"}, d[2].Command)
	require.Equal(t, "2s", d[2].Timeout)
	require.Equal(t, "script:collect.sh", d[1].String())

	// A script that is not executable is refused, naming the item.
	require.NoError(t, os.Chmod(script, 0o644))
	_, err = Check(c, CheckOptions{})
	require.ErrorContains(t, err, "scenarios[0].diagnostics[1]: script")
}

// FuzzParseConfig: any bytes give a config or a *ConfigError, never a panic;
// a parsed config checks without panicking.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte(`{"vms":[{"name":"a"}],"scenarios":[{"name":"s","vms":["a"],"probe":{"kind":"slot","index":3},"every":"1s","timeout":"1s","diagnostics":[{"kind":"script"}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a *ConfigError: %v", err)
			}
			return
		}
		Check(c, CheckOptions{NoFileChecks: true}) //nolint:errcheck // must not panic
	})
}
