package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LAD's minimum intervals (Nanos klib azure_diagnostics.c checks the same
// minimums; LAD's portal configuration samples every 15 s at the fastest and
// aggregates per minute at the fastest).
const (
	MinSampleInterval       = 15 * time.Second
	MinTransferInterval     = 60 * time.Second
	DefaultSampleInterval   = 15 * time.Second
	DefaultTransferInterval = 60 * time.Second
	// DefaultDeploymentID is the DeploymentId of a VM whose configuration
	// names none (as Nanos, and LAD without a hosting environment).
	DefaultDeploymentID = "unknown"
)

// Config is the Nanos/Ops "azure" tuple, as it appears at the top level of
// the monitor's JSON under "azure" (or wrapped: "ManifestPassthrough":
// {"azure": ...}):
//
//	"azure": {"diagnostics": {
//	    "storage_account": "myaccount",
//	    "storage_account_sas": "sv=...&sig=...",
//	    "endpoint": "http://127.0.0.1:10002/devstoreaccount1",
//	    "metrics": {"sample_interval": "15", "transfer_interval": "60"}}}
//
// Numbers may be JSON numbers or strings of digits (Ops writes strings).
// Unmarshalling checks the shape (unknown keys are errors, naming their key
// path); Validate checks the values.
type Config struct {
	Diagnostics *Diagnostics `json:"diagnostics,omitempty"`
}

// Diagnostics is the "diagnostics" part of the tuple.
type Diagnostics struct {
	// StorageAccount is the Azure storage account name.
	StorageAccount string `json:"storage_account"`
	// StorageAccountSAS is the account's SAS token (query string form,
	// with or without a leading "?"). It is never printed.
	StorageAccountSAS SAS `json:"storage_account_sas"`
	// Endpoint overrides the table endpoint (default
	// https://ACCOUNT.table.core.windows.net), e.g. Azurite's
	// "http://127.0.0.1:10002/devstoreaccount1" or a sovereign cloud.
	Endpoint string `json:"endpoint,omitempty"`
	// Metrics enables the memory metrics.
	Metrics *MetricsConfig `json:"metrics,omitempty"`
}

// MetricsConfig is the "metrics" part of the tuple. A zero interval means
// the default.
type MetricsConfig struct {
	SampleInterval   Seconds `json:"sample_interval,omitempty"`
	TransferInterval Seconds `json:"transfer_interval,omitempty"`
}

// Sample returns the sample interval with its default applied.
func (m MetricsConfig) Sample() time.Duration {
	if m.SampleInterval == 0 {
		return DefaultSampleInterval
	}
	return m.SampleInterval.Duration()
}

// Transfer returns the transfer interval with its default applied.
func (m MetricsConfig) Transfer() time.Duration {
	if m.TransferInterval == 0 {
		return DefaultTransferInterval
	}
	return m.TransferInterval.Duration()
}

// Seconds is a whole number of seconds given as a JSON number or a string
// of digits ("15").
type Seconds uint32

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// UnmarshalJSON accepts 15, "15" and " 15 ".
func (s *Seconds) UnmarshalJSON(b []byte) error {
	txt := strings.TrimSpace(string(b))
	if strings.HasPrefix(txt, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		txt = strings.TrimSpace(str)
	}
	n, err := strconv.ParseUint(txt, 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number of seconds, got %s", clip(b))
	}
	*s = Seconds(n)
	return nil
}

// SAS is a shared access signature token. Its String, GoString and JSON
// forms are redacted, so printing a Config never shows it.
type SAS string

const redacted = "[REDACTED]"

func (SAS) String() string   { return redacted }
func (SAS) GoString() string { return redacted }

// MarshalJSON redacts the token.
func (SAS) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// Token returns the token without a leading "?".
func (s SAS) Token() string { return strings.TrimPrefix(strings.TrimSpace(string(s)), "?") }

// ConfigError reports an invalid azure configuration value; Path is its
// key path, e.g. "azure.diagnostics.metrics.sample_interval". The message
// never contains the SAS token.
type ConfigError struct {
	Path string
	Msg  string
	Err  error // cause, for errors.Is (e.g. ErrSASExpired)
}

func (e *ConfigError) Error() string { return "metrics: config " + e.Path + ": " + e.Msg }

func (e *ConfigError) Unwrap() error { return e.Err }

// ErrSASExpired is wrapped by the error for a SAS whose expiry (se) has
// passed.
var ErrSASExpired = errors.New("SAS token expired")

// UnmarshalJSON parses the tuple strictly: unknown keys and wrong types are
// errors that name the key path under "azure".
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	var p plain
	if err := strictDecode(b, &p, "azure"); err != nil {
		return err
	}
	*c = Config(p)
	return nil
}

// strictDecode decodes b into v with unknown fields refused and errors
// turned into ConfigErrors with key paths under root.
func strictDecode(b []byte, v any, root string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		path := root
		if ute.Field != "" {
			path += "." + ute.Field
		}
		return &ConfigError{Path: path, Msg: fmt.Sprintf("want %s, got JSON %s", ute.Type, ute.Value)}
	}
	msg := err.Error()
	if k, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return &ConfigError{Path: root, Msg: "unknown key " + k + " (known: diagnostics; diagnostics.storage_account, storage_account_sas, endpoint, metrics; metrics.sample_interval, transfer_interval)"}
	}
	// Errors from Seconds.UnmarshalJSON come wrapped without a path.
	return &ConfigError{Path: root, Msg: redactSAS(msg)}
}

// redactSAS removes anything that looks like a SAS signature from text.
func redactSAS(s string) string {
	if i := strings.Index(s, "sig="); i >= 0 {
		return s[:i] + "sig=" + redacted
	}
	return s
}

// ParseConfig parses the value of the "azure" key.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return Config{}, ce
		}
		return Config{}, &ConfigError{Path: "azure", Msg: redactSAS(err.Error())}
	}
	return c, nil
}

// FindConfig finds the azure tuple in a whole monitor JSON document: at the
// top level as "azure", or as "ManifestPassthrough": {"azure": ...}. found
// is false when neither is there; both at once is an error.
func FindConfig(doc []byte) (cfg Config, found bool, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return Config{}, false, fmt.Errorf("metrics: monitor config: %w", err)
	}
	var raw json.RawMessage
	if v, ok := top["azure"]; ok {
		raw = v
	}
	if mp, ok := top["ManifestPassthrough"]; ok {
		var inner map[string]json.RawMessage
		if err := json.Unmarshal(mp, &inner); err != nil {
			return Config{}, false, &ConfigError{Path: "ManifestPassthrough", Msg: "want an object"}
		}
		if v, ok := inner["azure"]; ok {
			if raw != nil {
				return Config{}, false, &ConfigError{Path: "ManifestPassthrough.azure", Msg: `given as well as top-level "azure"; give one`}
			}
			raw = v
		}
	}
	if raw == nil {
		return Config{}, false, nil
	}
	cfg, err = ParseConfig(raw)
	return cfg, err == nil, err
}

// Enabled reports whether metrics are configured.
func (c Config) Enabled() bool { return c.Diagnostics != nil && c.Diagnostics.Metrics != nil }

// Validate checks the values at time now: the storage account name (3-24
// lower-case letters and digits), the SAS (present, a query string with a
// signature and an expiry in the future, allowing table access and adds
// when it says which services and permissions it grants), the endpoint
// (an http or https URL) and the intervals (at least 15 s and 60 s, the
// transfer interval a whole number of sample intervals' worth: not below
// the sample interval).
func (c Config) Validate(now time.Time) error {
	d := c.Diagnostics
	if d == nil {
		return nil
	}
	if d.Metrics != nil {
		if d.StorageAccount == "" {
			return &ConfigError{Path: "azure.diagnostics.storage_account", Msg: "required for metrics"}
		}
		if d.StorageAccountSAS.Token() == "" {
			return &ConfigError{Path: "azure.diagnostics.storage_account_sas", Msg: "required for metrics"}
		}
	}
	if d.StorageAccount != "" {
		if err := validAccount(d.StorageAccount); err != nil {
			return &ConfigError{Path: "azure.diagnostics.storage_account", Msg: err.Error()}
		}
	}
	if d.StorageAccountSAS.Token() != "" {
		if err := validSAS(d.StorageAccountSAS.Token(), now); err != nil {
			return &ConfigError{Path: "azure.diagnostics.storage_account_sas", Msg: err.Error(), Err: err}
		}
	}
	if d.Endpoint != "" {
		u, err := url.Parse(d.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return &ConfigError{Path: "azure.diagnostics.endpoint", Msg: fmt.Sprintf("%q is not an http(s) URL without a query (the SAS goes in storage_account_sas)", redactSAS(d.Endpoint))}
		}
	}
	if d.StorageAccountSAS.Token() != "" && strings.HasPrefix(d.TableEndpoint(), "http://") {
		if q, err := url.ParseQuery(d.StorageAccountSAS.Token()); err == nil && q.Get("spr") == "https" {
			return &ConfigError{Path: "azure.diagnostics.storage_account_sas", Msg: "allows https only (spr=https), but the endpoint is http: the service would refuse it (AuthorizationProtocolMismatch)"}
		}
	}
	if m := d.Metrics; m != nil {
		if s := m.Sample(); s < MinSampleInterval {
			return &ConfigError{Path: "azure.diagnostics.metrics.sample_interval", Msg: fmt.Sprintf("%s is below LAD's minimum %s", s, MinSampleInterval)}
		}
		if t := m.Transfer(); t < MinTransferInterval {
			return &ConfigError{Path: "azure.diagnostics.metrics.transfer_interval", Msg: fmt.Sprintf("%s is below LAD's minimum %s", t, MinTransferInterval)}
		}
		if m.Transfer() < m.Sample() {
			return &ConfigError{Path: "azure.diagnostics.metrics.transfer_interval", Msg: fmt.Sprintf("%s is below the sample interval %s", m.Transfer(), m.Sample())}
		}
	}
	return nil
}

// TableEndpoint returns the table service URL: Endpoint, or
// https://ACCOUNT.table.core.windows.net.
func (d Diagnostics) TableEndpoint() string {
	if d.Endpoint != "" {
		return strings.TrimRight(d.Endpoint, "/")
	}
	return "https://" + d.StorageAccount + ".table.core.windows.net"
}

func validAccount(name string) error {
	if len(name) < 3 || len(name) > 24 {
		return fmt.Errorf("%q is %d characters; an Azure storage account name has 3 to 24", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("%q has %q at offset %d; an Azure storage account name has only lower-case letters and digits", name, c, i)
		}
	}
	return nil
}

// sasTimeLayouts are the ISO 8601 forms Azure accepts for se/st.
var sasTimeLayouts = []string{"2006-01-02T15:04:05Z", "2006-01-02T15:04Z", "2006-01-02", time.RFC3339Nano}

// validSAS checks a SAS token without ever quoting it.
func validSAS(tok string, now time.Time) error {
	q, err := url.ParseQuery(tok)
	if err != nil {
		return errors.New("malformed: not a query string (want sv=...&se=...&sig=...)")
	}
	sig := q.Get("sig")
	if sig == "" {
		return errors.New("malformed: no signature (sig)")
	}
	se := q.Get("se")
	if se == "" {
		return errors.New("malformed: no expiry (se)")
	}
	var exp time.Time
	for _, l := range sasTimeLayouts {
		if exp, err = time.Parse(l, se); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("malformed: expiry se=%q is not an ISO 8601 UTC time", se)
	}
	if !exp.After(now) {
		return fmt.Errorf("%w at %s (now %s)", ErrSASExpired, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if ss := q.Get("ss"); ss != "" && !strings.Contains(ss, "t") {
		return fmt.Errorf("grants services ss=%q, without t (table)", ss)
	}
	if sp := q.Get("sp"); sp != "" && !strings.Contains(sp, "a") {
		return fmt.Errorf("grants permissions sp=%q, without a (add): entities cannot be inserted", sp)
	}
	return nil
}

// VMAzure is the per-VM part of the monitor's "vms[]" entries that the
// metrics use.
type VMAzure struct {
	ResourceID   string `json:"resource_id,omitempty"`
	Host         string `json:"host,omitempty"`
	DeploymentID string `json:"deployment_id,omitempty"`
}

// Identity returns the VM's LAD identity with Nanos's defaults: the
// resource id and host default to the VM's name, the deployment id to
// "unknown".
func (v VMAzure) Identity(vmName string) Identity {
	id := Identity{ResourceID: v.ResourceID, Host: v.Host, DeploymentID: v.DeploymentID}
	if id.ResourceID == "" {
		id.ResourceID = vmName
	}
	if id.Host == "" {
		id.Host = vmName
	}
	if id.DeploymentID == "" {
		id.DeploymentID = DefaultDeploymentID
	}
	return id
}
