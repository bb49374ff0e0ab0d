package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/metrics"
	"github.com/acpidiag/acpidiag/region"
)

// Config is the monitor's configuration: one JSON file (docs/monitor.md).
// The key names are a stable interface.
type Config struct {
	VMs       []VMConfig       `json:"vms"`
	Scenarios []ScenarioConfig `json:"scenarios"`
	Sinks     []SinkConfig     `json:"sinks"`
	Limits    Limits           `json:"limits"`
	// Azure is reserved for the metrics package's configuration (metrics.Config);
	// the monitor keeps it raw and does not interpret it.
	Azure json.RawMessage `json:"azure,omitempty"`
	// ManifestPassthrough is reserved: kept raw, not interpreted.
	ManifestPassthrough json.RawMessage `json:"ManifestPassthrough,omitempty"`
}

// VMConfig is one VM: a name, labels and the paths of its QEMU sockets and
// files, each optional.
type VMConfig struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	QMP    string            `json:"qmp,omitempty"`
	Serial string            `json:"serial,omitempty"`
	Region string            `json:"region,omitempty"`
	// RegionOffset is the region's offset in the region file (fixed
	// placement: the guest-physical address); 0 for ivshmem.
	RegionOffset int64  `json:"region_offset,omitempty"`
	ERST         string `json:"erst,omitempty"`
	// SerialChardev is the QEMU chardev id of the serial console, where
	// SysRq sends a serial BREAK when the keyboard path fails (default
	// qemuhook.SerialChardevID, the id qemuhook's own launches use).
	SerialChardev string `json:"serial_chardev,omitempty"`
	// ResourceID, Host and DeploymentID are the VM's identity in the
	// Azure metrics (metrics.VMAzure; default: the VM's name, its name,
	// and "unknown", as Nanos does). Used only with the "azure" tuple.
	ResourceID   string `json:"resource_id,omitempty"`
	Host         string `json:"host,omitempty"`
	DeploymentID string `json:"deployment_id,omitempty"`
}

// Azure returns the VM's per-VM metrics identity keys.
func (v VMConfig) Azure() metrics.VMAzure {
	return metrics.VMAzure{ResourceID: v.ResourceID, Host: v.Host, DeploymentID: v.DeploymentID}
}

// equal reports whether two VM configurations are the same (a reload
// leaves an unchanged VM alone).
func (v VMConfig) equal(o VMConfig) bool {
	if v.Name != o.Name || v.QMP != o.QMP || v.Serial != o.Serial || v.Region != o.Region ||
		v.RegionOffset != o.RegionOffset || v.ERST != o.ERST || v.SerialChardev != o.SerialChardev || len(v.Labels) != len(o.Labels) {
		return false
	}
	for k, x := range v.Labels {
		if y, ok := o.Labels[k]; !ok || x != y {
			return false
		}
	}
	return true
}

// ScenarioConfig is a check bound to VMs by name (VMs) or label selector
// (Match: every pair must match), run every Every with a Timeout.
type ScenarioConfig struct {
	Name        string            `json:"name"`
	VMs         []string          `json:"vms,omitempty"`
	Match       map[string]string `json:"match,omitempty"`
	Probe       ProbeConfig       `json:"probe"`
	Every       string            `json:"every"`
	Timeout     string            `json:"timeout"`
	Failures    int               `json:"failures"`
	Cooldown    string            `json:"cooldown"`
	Diagnostics []DiagSpec        `json:"diagnostics,omitempty"`
}

// ProbeConfig is a scenario's check. Kind selects the probe; the other
// fields belong to one kind each (docs/monitor.md).
type ProbeConfig struct {
	Kind    string   `json:"kind"`
	Tag     string   `json:"tag,omitempty"`     // slot
	Index   *int     `json:"index,omitempty"`   // slot
	Send    string   `json:"send,omitempty"`    // console
	Expect  string   `json:"expect,omitempty"`  // console
	Address string   `json:"address,omitempty"` // tcp
	URL     string   `json:"url,omitempty"`     // http
	Status  int      `json:"status,omitempty"`  // http (default 200)
	Path    string   `json:"path,omitempty"`    // disk
	Offset  int64    `json:"offset,omitempty"`  // disk
	Command []string `json:"command,omitempty"` // exec
	// MaxAge is how long the balloon's last-update may stay unchanged
	// (balloon; default 30s, at least 3s: QEMU polls every MaxAge/5).
	MaxAge string `json:"max_age,omitempty"`
}

// equal compares two probe configurations by value (the index by the
// number it points to, not by its address).
func (p ProbeConfig) equal(o ProbeConfig) bool { return reflect.DeepEqual(p, o) }

// DiagSpec names one diagnostic. In JSON it is a string ("sysrq:t",
// "registers", "script:/path/to/exe") or an object
// {"kind": "script", "command": [...], "timeout": "20s"}.
type DiagSpec struct {
	Kind    string   `json:"kind"`
	Key     string   `json:"key,omitempty"`     // sysrq
	Command []string `json:"command,omitempty"` // script
	Timeout string   `json:"timeout,omitempty"` // script (default 30s) or any diagnostic
}

func (d DiagSpec) equal(o DiagSpec) bool {
	return d.Kind == o.Kind && d.Key == o.Key && d.Timeout == o.Timeout && slices.Equal(d.Command, o.Command)
}

// UnmarshalJSON accepts the string and the object form.
func (d *DiagSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = ParseDiagSpec(s)
		return nil
	}
	type plain DiagSpec
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*d = DiagSpec(p)
	return nil
}

// ParseDiagSpec parses the string form of a diagnostic: "kind" or
// "kind:arg" (sysrq:KEY, script:PATH).
func ParseDiagSpec(s string) DiagSpec {
	kind, arg, _ := strings.Cut(s, ":")
	d := DiagSpec{Kind: kind}
	switch kind {
	case DiagSysRq:
		d.Key = arg
	case DiagScript:
		if arg != "" {
			d.Command = []string{arg}
		}
	default:
		if arg != "" {
			d.Key = arg // refused by Check
		}
	}
	return d
}

// String is the spec's short name, as used in bundles ("sysrq:t").
func (d DiagSpec) String() string {
	switch {
	case d.Kind == DiagSysRq:
		return "sysrq:" + d.Key
	case d.Kind == DiagScript && len(d.Command) > 0:
		return "script:" + filepath.Base(d.Command[0])
	}
	return d.Kind
}

// SinkConfig is where finished bundles go.
type SinkConfig struct {
	Kind string `json:"kind"`
	Path string `json:"path,omitempty"` // dir
	// Pack also writes ID.tar.gz beside the directory (dir sink).
	Pack bool `json:"pack,omitempty"`
	// http sink (package monitor/deliver; docs/collector.md): the
	// collector's URL, the spool directory, a bearer token file, a CA
	// file, a client certificate and key, and the spool's bounds.
	URL           string `json:"url,omitempty"`
	Spool         string `json:"spool,omitempty"`
	TokenFile     string `json:"token_file,omitempty"`
	CAFile        string `json:"ca_file,omitempty"`
	CertFile      string `json:"cert_file,omitempty"`
	KeyFile       string `json:"key_file,omitempty"`
	SpoolMaxBytes int64  `json:"spool_max_bytes,omitempty"`
	SpoolMaxAge   string `json:"spool_max_age,omitempty"`
	MaxBackoff    string `json:"max_backoff,omitempty"`
}

// Limits bound the diagnostics. Zero values select the defaults.
type Limits struct {
	// Diagnostics is how many diagnostics run at once across all VMs
	// (default 2).
	Diagnostics int `json:"diagnostics,omitempty"`
	// BundleBytes caps one bundle's artifacts (default 16 MiB).
	BundleBytes int64 `json:"bundle_bytes,omitempty"`
	// ArtifactBytes caps one artifact (default 4 MiB).
	ArtifactBytes int64 `json:"artifact_bytes,omitempty"`
	// ConsoleBytes is how much of the console's tail the console
	// diagnostic keeps (default 64 KiB).
	ConsoleBytes int `json:"console_bytes,omitempty"`
	// MemoryBytes caps the memory diagnostic's dump-guest-memory (it is
	// refused when the guest's RAM is larger); 0 refuses "memory" in check.
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// RestoreLogLevel is the console loglevel (SysRq 0-9) sent after SysRq
	// captures, which raise it to 8. The host cannot read the guest's
	// current level, so unset means: the level the guest booted with when
	// QEMU's -append sets it (loglevel=N, quiet, debug; BootLogLevel),
	// else DefaultRestoreLogLevel (4, a quiet boot's level).
	RestoreLogLevel *int `json:"restore_loglevel,omitempty"`
	// DiagnosticTimeout bounds each diagnostic without its own timeout
	// (default 20s).
	DiagnosticTimeout string `json:"diagnostic_timeout,omitempty"`
	// History is how many probe results per scenario are kept for bundles
	// (default 32).
	History int `json:"history,omitempty"`
}

// Limit defaults.
const (
	DefaultDiagnostics       = 2
	DefaultBundleBytes       = 16 << 20
	DefaultArtifactBytes     = 4 << 20
	DefaultConsoleBytes      = 64 << 10
	DefaultRestoreLogLevel   = 4 // when unset and QEMU's -append does not say (BootLogLevel)
	DefaultDiagnosticTimeout = 20 * time.Second
	DefaultHistory           = 32
)

func (l Limits) norm() Limits {
	if l.Diagnostics <= 0 {
		l.Diagnostics = DefaultDiagnostics
	}
	if l.BundleBytes <= 0 {
		l.BundleBytes = DefaultBundleBytes
	}
	if l.ArtifactBytes <= 0 {
		l.ArtifactBytes = DefaultArtifactBytes
	}
	if l.ArtifactBytes > l.BundleBytes {
		l.ArtifactBytes = l.BundleBytes
	}
	if l.ConsoleBytes <= 0 {
		l.ConsoleBytes = DefaultConsoleBytes
	}
	if l.History <= 0 {
		l.History = DefaultHistory
	}
	return l
}

func (l Limits) diagTimeout() time.Duration {
	d, err := time.ParseDuration(l.DiagnosticTimeout)
	if err != nil || d <= 0 {
		return DefaultDiagnosticTimeout
	}
	return d
}

// Probe kinds.
const (
	ProbeRegion  = "region"
	ProbeSlot    = "slot"
	ProbeConsole = "console"
	ProbeTCP     = "tcp"
	ProbeHTTP    = "http"
	ProbeDisk    = "disk"
	ProbeQMP     = "qmp"
	ProbeExec    = "exec"
	// ProbeBalloon fails when the virtio-balloon statistics' last-update
	// stops advancing (metrics.BalloonStallTracker).
	ProbeBalloon = "balloon"
)

// DefaultBalloonMaxAge is the balloon probe's default max_age.
const DefaultBalloonMaxAge = 30 * time.Second

// ProbeKinds lists every probe kind.
var ProbeKinds = []string{ProbeRegion, ProbeSlot, ProbeConsole, ProbeTCP, ProbeHTTP, ProbeDisk, ProbeQMP, ProbeExec, ProbeBalloon}

// Diagnostic kinds.
const (
	DiagSysRq     = "sysrq"
	DiagRegisters = "registers"
	DiagQMP       = "qmp"
	DiagHost      = "host"
	DiagConsole   = "console"
	DiagRegion    = "region"
	DiagERST      = "erst"
	DiagMemory    = "memory"
	DiagScript    = "script"
)

// DiagKinds lists every diagnostic kind.
var DiagKinds = []string{DiagSysRq, DiagRegisters, DiagQMP, DiagHost, DiagConsole, DiagRegion, DiagERST, DiagMemory, DiagScript}

// FieldError is one configuration problem, at a key path such as
// "scenarios[0].every".
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// ConfigError holds every problem Check found.
type ConfigError struct {
	File   string
	Errors []*FieldError
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File + ": ")
	}
	fmt.Fprintf(&b, "%d configuration error(s):", len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  " + fe.Error())
	}
	return b.String()
}

// Warning is a configuration oddity that does not stop the monitor (a
// selector matching no VM, a socket that does not exist yet).
type Warning struct {
	Path string
	Msg  string
}

func (w Warning) String() string { return w.Path + ": " + w.Msg }

// Scenario is a checked scenario: durations parsed, probe validated.
type Scenario struct {
	Config      ScenarioConfig
	Every       time.Duration
	Timeout     time.Duration
	Cooldown    time.Duration
	Failures    int
	Expect      *regexp.Regexp // console
	Diagnostics []DiagSpec
	// Index is the scenario's position in the configuration.
	Index int
}

// Plan is a checked configuration.
type Plan struct {
	Config    Config
	Scenarios []*Scenario
	Limits    Limits
	Warnings  []Warning
	// Azure is the parsed and validated "azure" tuple (top level or in
	// ManifestPassthrough); Azure.Enabled() says whether the monitor runs
	// the metrics pipeline.
	Azure metrics.Config
}

// LoadConfig reads and parses a configuration file (Check validates it).
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("monitor: config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = path
		}
		return Config{}, err
	}
	return c, nil
}

// ParseConfig parses the JSON configuration. Unknown keys and type
// mismatches are *ConfigError values naming the key path.
func ParseConfig(b []byte) (Config, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return Config{}, &ConfigError{Errors: []*FieldError{{Path: "$", Msg: jsonMsg(b, err)}}}
	}
	var c Config
	var errs []*FieldError
	add := func(path string, err error) {
		errs = append(errs, &FieldError{Path: path, Msg: jsonMsg(nil, err)})
	}
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := top[k]
		switch k {
		case "vms":
			c.VMs = parseList[VMConfig](k, raw, add)
		case "scenarios":
			c.Scenarios = parseList[ScenarioConfig](k, raw, add)
		case "sinks":
			c.Sinks = parseList[SinkConfig](k, raw, add)
		case "limits":
			if err := strictUnmarshal(raw, &c.Limits); err != nil {
				add("limits"+fieldOf(err), err)
			}
		case "azure":
			c.Azure = append(json.RawMessage(nil), raw...)
		case "ManifestPassthrough":
			c.ManifestPassthrough = append(json.RawMessage(nil), raw...)
		default:
			errs = append(errs, &FieldError{Path: k, Msg: "unknown key (want vms, scenarios, sinks, limits, azure)"})
		}
	}
	if len(errs) > 0 {
		return c, &ConfigError{Errors: errs}
	}
	return c, nil
}

// parseList decodes the JSON array raw under key, each element strictly;
// problems are reported with their key path (key[i].field).
func parseList[T any](key string, raw json.RawMessage, add func(string, error)) []T {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		add(key, err)
		return nil
	}
	out := make([]T, 0, len(items))
	for i, it := range items {
		var v T
		if err := strictUnmarshal(it, &v); err != nil {
			add(fmt.Sprintf("%s[%d]%s", key, i, fieldOf(err)), err)
		}
		out = append(out, v)
	}
	return out
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err != nil && unknownField.MatchString(err.Error()) {
		if p := findUnknown(b, reflect.TypeOf(v).Elem(), ""); p != "" {
			return &unknownKeyError{path: p}
		}
	}
	return err
}

// unknownKeyError is an unknown key at a path below the decoded value.
type unknownKeyError struct{ path string }

func (e *unknownKeyError) Error() string { return "unknown key" }

// findUnknown walks JSON b against type t and returns the path of the
// first key that t does not have ("" if none).
func findUnknown(b []byte, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil {
			return ""
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fieldByJSONName(t, k)
			if !ok {
				return path + "." + k
			}
			if p := findUnknown(obj[k], f.Type, path+"."+k); p != "" {
				return p
			}
		}
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(b, &items) != nil {
			return ""
		}
		for i, it := range items {
			if p := findUnknown(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && strings.EqualFold(f.Name, name)) {
			return f, true
		}
	}
	for i := 0; i < t.NumField(); i++ { // encoding/json matches case-insensitively
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if strings.EqualFold(tag, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldOf turns a json error into a key path suffix (".probe.kind").
func fieldOf(err error) string {
	var uk *unknownKeyError
	if errors.As(err, &uk) {
		return uk.path
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return "." + te.Field
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return "." + m[1]
	}
	return ""
}

var unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

func jsonMsg(b []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Sprintf("invalid JSON at byte %d (line %d): %v", se.Offset, line, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want a %s, got a JSON %s", te.Type, te.Value)
	}
	var uk *unknownKeyError
	if errors.As(err, &uk) || unknownField.MatchString(err.Error()) {
		return "unknown key"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// CheckOptions tunes Check.
type CheckOptions struct {
	// NoFileChecks skips looking at the file system (socket and file
	// existence warnings, script executables).
	NoFileChecks bool
	// SinksGiven says the caller supplies sinks (Options.Sinks): an empty
	// "sinks" list is then allowed.
	SinksGiven bool
}

// Check validates a configuration and returns the plan the monitor runs.
// Every error names its key path; warnings do not stop the monitor.
func Check(c Config, opts CheckOptions) (*Plan, error) {
	p := &Plan{Config: c, Limits: c.Limits.norm()}
	var errs []*FieldError
	bad := func(path, format string, a ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	warn := func(path, format string, a ...any) {
		p.Warnings = append(p.Warnings, Warning{Path: path, Msg: fmt.Sprintf(format, a...)})
	}

	names := map[string]int{}
	for i, v := range c.VMs {
		path := fmt.Sprintf("vms[%d]", i)
		if err := checkVMConfig(v); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				bad(path+fe.Path, "%s", fe.Msg)
			}
		}
		if j, dup := names[v.Name]; dup && v.Name != "" {
			bad(path+".name", "%q is also the name of vms[%d]", v.Name, j)
		}
		names[v.Name] = i
		if opts.NoFileChecks {
			continue
		}
		for _, f := range []struct{ key, p string }{{"qmp", v.QMP}, {"serial", v.Serial}, {"region", v.Region}, {"erst", v.ERST}} {
			if f.p == "" {
				continue
			}
			if _, err := os.Stat(f.p); err != nil {
				warn(path+"."+f.key, "%s does not exist yet (waited for)", f.p)
			}
		}
	}

	snames := map[string]int{}
	for i, sc := range c.Scenarios {
		path := fmt.Sprintf("scenarios[%d]", i)
		s := &Scenario{Config: sc, Index: i, Failures: sc.Failures}
		if sc.Name == "" {
			bad(path+".name", "empty")
		} else if j, dup := snames[sc.Name]; dup {
			bad(path+".name", "%q is also the name of scenarios[%d]", sc.Name, j)
		}
		snames[sc.Name] = i
		dur := func(key, v string, def time.Duration) time.Duration {
			if v == "" {
				if def == 0 {
					bad(path+"."+key, "missing (a duration such as \"10s\")")
				}
				return def
			}
			d, err := time.ParseDuration(v)
			if err != nil {
				bad(path+"."+key, "%q is not a duration (e.g. \"10s\", \"1m30s\")", v)
				return def
			}
			if d <= 0 {
				bad(path+"."+key, "%q: must be positive", v)
				return def
			}
			return d
		}
		s.Every = dur("every", sc.Every, 0)
		s.Timeout = dur("timeout", sc.Timeout, 0)
		if sc.Cooldown != "" {
			if d, err := time.ParseDuration(sc.Cooldown); err != nil {
				bad(path+".cooldown", "%q is not a duration", sc.Cooldown)
			} else if d < 0 {
				bad(path+".cooldown", "%q: must not be negative", sc.Cooldown)
			} else {
				s.Cooldown = d
			}
		}
		if s.Every > 0 && s.Every < 10*time.Millisecond {
			bad(path+".every", "%s is below the 10ms minimum", s.Every)
		}
		if s.Every > 0 && s.Timeout > s.Every {
			bad(path+".timeout", "%s is longer than every (%s)", s.Timeout, s.Every)
		}
		if sc.Failures < 0 {
			bad(path+".failures", "%d: must be at least 1", sc.Failures)
		}
		if s.Failures <= 0 {
			s.Failures = 1
		}
		s.Expect = checkProbe(path+".probe", sc.Probe, bad)
		var need []needAt
		for _, n := range probeNeeds(sc.Probe.Kind) {
			need = append(need, needAt{n.key, path + "." + n.at})
		}
		for j, d := range sc.Diagnostics {
			dp := fmt.Sprintf("%s.diagnostics[%d]", path, j)
			checkDiag(dp, d, p.Limits, opts, bad)
			for _, n := range diagNeeds(d.Kind) {
				need = append(need, needAt{n, dp})
			}
		}
		s.Diagnostics = sc.Diagnostics
		if len(sc.VMs) == 0 && len(sc.Match) == 0 {
			bad(path, "binds no VM: give \"vms\" (names) or \"match\" (labels)")
		}
		for j, n := range sc.VMs {
			if _, ok := names[n]; !ok {
				bad(fmt.Sprintf("%s.vms[%d]", path, j), "no VM named %q", n)
			}
		}
		bound := 0
		for vi, v := range c.VMs {
			if !s.Binds(v) {
				continue
			}
			bound++
			for _, n := range need {
				if vmPath(v, n.key) == "" {
					bad(n.at, "needs %q, which vms[%d] (%q) does not have", n.key, vi, v.Name)
				}
			}
		}
		if len(sc.Match) > 0 && bound == 0 {
			warn(path+".match", "selector matches no VM")
		}
		p.Scenarios = append(p.Scenarios, s)
	}

	if len(c.Sinks) == 0 && !opts.SinksGiven {
		bad("sinks", "empty: want at least one sink, e.g. {\"kind\": \"dir\", \"path\": \"/var/lib/acpidiag/reports\"}")
	}
	for i, s := range c.Sinks {
		path := fmt.Sprintf("sinks[%d]", i)
		switch s.Kind {
		case "dir":
			if s.Path == "" {
				bad(path+".path", "empty (the directory bundles go to)")
			}
		case "http":
			checkHTTPSink(path, s, bad)
		case "":
			bad(path+".kind", "missing (want dir or http)")
		default:
			bad(path+".kind", "unknown sink kind %q (want dir or http)", s.Kind)
		}
	}
	if az, path, err := azureConfig(c); err != nil {
		var ce *metrics.ConfigError
		if errors.As(err, &ce) {
			bad(path+strings.TrimPrefix(ce.Path, "azure"), "%s", ce.Msg)
		} else {
			bad(path, "%v", err)
		}
	} else {
		p.Azure = az
	}
	l := c.Limits
	if l.Diagnostics < 0 {
		bad("limits.diagnostics", "%d: must be positive", l.Diagnostics)
	}
	if l.BundleBytes < 0 || l.ArtifactBytes < 0 || l.MemoryBytes < 0 || l.ConsoleBytes < 0 {
		bad("limits", "byte limits must not be negative")
	}
	if l.RestoreLogLevel != nil && (*l.RestoreLogLevel < 0 || *l.RestoreLogLevel > 9) {
		bad("limits.restore_loglevel", "%d: want 0-9", *l.RestoreLogLevel)
	}
	if l.DiagnosticTimeout != "" {
		if d, err := time.ParseDuration(l.DiagnosticTimeout); err != nil || d <= 0 {
			bad("limits.diagnostic_timeout", "%q: want a positive duration", l.DiagnosticTimeout)
		}
	}
	if len(errs) > 0 {
		return nil, &ConfigError{Errors: errs}
	}
	return p, nil
}

// azureConfig parses and validates the "azure" tuple of c: top-level
// "azure" or "ManifestPassthrough": {"azure": ...}, not both. path is the
// key path of the tuple, for errors.
func azureConfig(c Config) (metrics.Config, string, error) {
	path, raw := "azure", c.Azure
	if len(c.ManifestPassthrough) > 0 {
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(c.ManifestPassthrough, &inner); err != nil {
			return metrics.Config{}, "ManifestPassthrough", errors.New("want an object")
		}
		if v, ok := inner["azure"]; ok {
			if raw != nil {
				return metrics.Config{}, "ManifestPassthrough.azure", errors.New(`given as well as top-level "azure"; give one`)
			}
			path, raw = "ManifestPassthrough.azure", v
		}
	}
	if raw == nil {
		return metrics.Config{}, path, nil
	}
	az, err := metrics.ParseConfig(raw)
	if err == nil {
		err = az.Validate(time.Now())
	}
	return az, path, err
}

// checkVMConfig validates one VM's own fields (used by Check and the Go
// API). The error is a *FieldError whose Path is relative (".name").
func checkVMConfig(v VMConfig) error {
	switch {
	case v.Name == "":
		return &FieldError{Path: ".name", Msg: "empty"}
	case strings.ContainsAny(v.Name, "/\x00") || v.Name == "." || v.Name == "..":
		return &FieldError{Path: ".name", Msg: fmt.Sprintf("%q: a VM name must be usable as a file name", v.Name)}
	case v.RegionOffset < 0:
		return &FieldError{Path: ".region_offset", Msg: "negative"}
	}
	for _, f := range []struct{ key, p string }{{"qmp", v.QMP}, {"serial", v.Serial}} {
		if len(f.p) > 107 {
			return &FieldError{Path: "." + f.key, Msg: "socket path longer than 107 bytes"}
		}
	}
	if v.QMP != "" && v.QMP == v.Serial {
		return &FieldError{Path: ".serial", Msg: "same path as qmp"}
	}
	return nil
}

type needAt struct{ key, at string }

func probeNeeds(kind string) []needAt {
	switch kind {
	case ProbeRegion, ProbeSlot:
		return []needAt{{"region", "probe"}}
	case ProbeConsole:
		return []needAt{{"serial", "probe"}}
	case ProbeQMP, ProbeBalloon:
		return []needAt{{"qmp", "probe"}}
	}
	return nil
}

func diagNeeds(kind string) []string {
	switch kind {
	case DiagSysRq:
		return []string{"qmp", "serial"}
	case DiagRegisters, DiagQMP, DiagMemory:
		return []string{"qmp"}
	case DiagConsole:
		return []string{"serial"}
	case DiagRegion:
		return []string{"region"}
	case DiagERST:
		return []string{"erst"}
	}
	return nil // host, script
}

func vmPath(v VMConfig, key string) string {
	switch key {
	case "qmp":
		return v.QMP
	case "serial":
		return v.Serial
	case "region":
		return v.Region
	case "erst":
		return v.ERST
	}
	return ""
}

func checkProbe(path string, pc ProbeConfig, bad func(string, string, ...any)) *regexp.Regexp {
	switch pc.Kind {
	case ProbeRegion, ProbeQMP:
	case ProbeSlot:
		switch {
		case pc.Tag == "" && pc.Index == nil:
			bad(path, "slot probe needs \"tag\" or \"index\"")
		case pc.Tag != "" && pc.Index != nil:
			bad(path, "slot probe takes \"tag\" or \"index\", not both")
		case pc.Index != nil:
			if _, err := region.SlotOffset(*pc.Index); err != nil {
				bad(path+".index", "%d: want 0-%d", *pc.Index, region.NumSlots-1)
			}
		case len(pc.Tag) > region.SlotTagLen:
			bad(path+".tag", "%q is longer than %d bytes", pc.Tag, region.SlotTagLen)
		}
	case ProbeConsole:
		if pc.Send == "" {
			bad(path+".send", "empty (the line to type, e.g. \"uptime\")")
		}
		if strings.ContainsAny(pc.Send, "\r\n") {
			bad(path+".send", "must be one line (the newline is added)")
		}
		if pc.Expect == "" {
			bad(path+".expect", "empty (a regular expression the output must match)")
			return nil
		}
		re, err := regexp.Compile(pc.Expect)
		if err != nil {
			bad(path+".expect", "bad regular expression: %v", err)
			return nil
		}
		return re
	case ProbeTCP:
		if _, port, err := splitHostPort(pc.Address); err != nil {
			bad(path+".address", "%q: want host:port (%v)", pc.Address, err)
		} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			bad(path+".address", "%q: bad port", pc.Address)
		}
	case ProbeHTTP:
		if !strings.HasPrefix(pc.URL, "http://") && !strings.HasPrefix(pc.URL, "https://") {
			bad(path+".url", "%q: want an http:// or https:// URL", pc.URL)
		}
		if pc.Status != 0 && (pc.Status < 100 || pc.Status > 599) {
			bad(path+".status", "%d: not an HTTP status", pc.Status)
		}
	case ProbeDisk:
		if pc.Path == "" {
			bad(path+".path", "empty (the raw disk image)")
		}
		if pc.Offset < 0 {
			bad(path+".offset", "negative")
		}
	case ProbeExec:
		if len(pc.Command) == 0 || pc.Command[0] == "" {
			bad(path+".command", "empty (want [\"/path\", \"arg\", ...])")
		}
	case ProbeBalloon:
		if pc.MaxAge != "" {
			if d, err := time.ParseDuration(pc.MaxAge); err != nil || d < 3*time.Second {
				bad(path+".max_age", "%q: want a duration of at least 3s", pc.MaxAge)
			}
		}
	case "":
		bad(path+".kind", "missing (want one of %s)", strings.Join(ProbeKinds, ", "))
	default:
		bad(path+".kind", "unknown probe kind %q (want one of %s)", pc.Kind, strings.Join(ProbeKinds, ", "))
	}
	return nil
}

func splitHostPort(a string) (string, string, error) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return "", "", errors.New("missing port")
	}
	return a[:i], a[i+1:], nil
}

func checkDiag(path string, d DiagSpec, l Limits, opts CheckOptions, bad func(string, string, ...any)) {
	if d.Timeout != "" {
		if t, err := time.ParseDuration(d.Timeout); err != nil || t <= 0 {
			bad(path+".timeout", "%q: want a positive duration", d.Timeout)
		}
	}
	switch d.Kind {
	case DiagSysRq:
		if len(d.Key) != 1 || !strings.Contains("twlmqpz", d.Key) {
			bad(path, "sysrq key %q: want one of t w l m q p z (e.g. \"sysrq:t\")", d.Key)
		}
	case DiagScript:
		if len(d.Command) == 0 || d.Command[0] == "" {
			bad(path, "script needs a command (\"script:/path\" or {\"kind\":\"script\",\"command\":[...]})")
		} else if !filepath.IsAbs(d.Command[0]) {
			bad(path, "script %q: want an absolute path", d.Command[0])
		} else if !opts.NoFileChecks {
			if st, err := os.Stat(d.Command[0]); err != nil || st.Mode()&0o111 == 0 || st.IsDir() {
				bad(path, "script %q is not an executable file", d.Command[0])
			}
		}
	case DiagMemory:
		if l.MemoryBytes <= 0 {
			bad(path, "memory dumps are off: set limits.memory_bytes to the largest guest RAM to dump")
		}
	case DiagRegisters, DiagQMP, DiagHost, DiagConsole, DiagRegion, DiagERST:
		if d.Key != "" {
			bad(path, "%q takes no argument", d.Kind)
		}
	case "":
		bad(path, "empty diagnostic (want one of %s)", strings.Join(DiagKinds, ", "))
	default:
		bad(path, "unknown diagnostic %q (want one of %s)", d.Kind, strings.Join(DiagKinds, ", "))
	}
}

// Binds reports whether the scenario applies to VM v: v is named in VMs,
// or every label of Match is set on v with that value.
func (s *Scenario) Binds(v VMConfig) bool {
	for _, n := range s.Config.VMs {
		if n == v.Name {
			return true
		}
	}
	if len(s.Config.Match) == 0 {
		return false
	}
	for k, want := range s.Config.Match {
		if got, ok := v.Labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}
