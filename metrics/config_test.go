package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testSig = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"

func sasToken(expiry time.Time) string {
	return "sv=2022-11-02&ss=t&srt=sco&sp=rwdlacu&se=" + expiry.UTC().Format("2006-01-02T15:04:05Z") + "&sig=" + testSig
}

func TestConfigNanosTuple(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	doc := fmt.Sprintf(`{"vms":[],"azure":{"diagnostics":{"storage_account":"myacct01","storage_account_sas":%q,
		"metrics":{"sample_interval":"15","transfer_interval":"60"}}}}`, "?"+sasToken(now.Add(time.Hour)))
	cfg, found, err := FindConfig([]byte(doc))
	require.NoError(t, err)
	require.True(t, found)
	require.NoError(t, cfg.Validate(now))
	assert.True(t, cfg.Enabled())
	assert.Equal(t, 15*time.Second, cfg.Diagnostics.Metrics.Sample())
	assert.Equal(t, time.Minute, cfg.Diagnostics.Metrics.Transfer())
	assert.Equal(t, "https://myacct01.table.core.windows.net", cfg.Diagnostics.TableEndpoint())
	assert.Equal(t, sasToken(now.Add(time.Hour)), cfg.Diagnostics.StorageAccountSAS.Token())

	// Wrapped in ManifestPassthrough, numbers as numbers, endpoint override.
	doc = fmt.Sprintf(`{"ManifestPassthrough":{"azure":{"diagnostics":{"storage_account":"devstoreaccount1","storage_account_sas":%q,
		"endpoint":"http://127.0.0.1:10002/devstoreaccount1","metrics":{"sample_interval":20,"transfer_interval":120}}}}}`, sasToken(now.Add(time.Hour)))
	cfg, found, err = FindConfig([]byte(doc))
	require.NoError(t, err)
	require.True(t, found)
	require.NoError(t, cfg.Validate(now))
	assert.Equal(t, 20*time.Second, cfg.Diagnostics.Metrics.Sample())
	assert.Equal(t, 2*time.Minute, cfg.Diagnostics.Metrics.Transfer())
	assert.Equal(t, "http://127.0.0.1:10002/devstoreaccount1", cfg.Diagnostics.TableEndpoint())

	// Defaults when metrics says nothing.
	cfg, err = ParseConfig([]byte(fmt.Sprintf(`{"diagnostics":{"storage_account":"abc","storage_account_sas":%q,"metrics":{}}}`, sasToken(now.Add(time.Hour)))))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate(now))
	assert.Equal(t, DefaultSampleInterval, cfg.Diagnostics.Metrics.Sample())

	_, found, err = FindConfig([]byte(`{"vms":[]}`))
	require.NoError(t, err)
	assert.False(t, found)
	_, _, err = FindConfig([]byte(`{"azure":{},"ManifestPassthrough":{"azure":{}}}`))
	assert.ErrorContains(t, err, "ManifestPassthrough.azure: given as well")

	// Embedded in a monitor config struct, as package monitor does.
	var mon struct {
		Azure *Config `json:"azure"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"azure":{"diagnostics":{"storage_account":"abc"}}}`), &mon))
	assert.Equal(t, "abc", mon.Azure.Diagnostics.StorageAccount)
	err = json.Unmarshal([]byte(`{"azure":{"diagnostics":{"storage_acount":"abc"}}}`), &mon)
	assert.ErrorContains(t, err, `unknown key "storage_acount"`)
}

func TestConfigErrors(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	good := sasToken(now.Add(time.Hour))
	cases := []struct {
		name, doc, want string
	}{
		{"sample below 15", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"` + good + `","metrics":{"sample_interval":"14"}}}`,
			"azure.diagnostics.metrics.sample_interval: 14s is below LAD's minimum 15s"},
		{"transfer below 60", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"` + good + `","metrics":{"transfer_interval":"59"}}}`,
			"azure.diagnostics.metrics.transfer_interval: 59s is below LAD's minimum 1m0s"},
		{"transfer below sample", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"` + good + `","metrics":{"sample_interval":"90","transfer_interval":"60"}}}`,
			"below the sample interval"},
		{"interval not a number", `{"diagnostics":{"metrics":{"sample_interval":"fifteen"}}}`, `want a whole number of seconds, got "fifteen"`},
		{"account upper case", `{"diagnostics":{"storage_account":"MyAcct","storage_account_sas":"` + good + `"}}`,
			`azure.diagnostics.storage_account: "MyAcct" has 'M' at offset 0`},
		{"account too short", `{"diagnostics":{"storage_account":"ab"}}`, "3 to 24"},
		{"metrics without account", `{"diagnostics":{"metrics":{}}}`, "storage_account: required for metrics"},
		{"metrics without sas", `{"diagnostics":{"storage_account":"abc","metrics":{}}}`, "storage_account_sas: required for metrics"},
		{"sas no sig", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"sv=1&se=2030-01-01"}}`, "malformed: no signature (sig)"},
		{"sas no expiry", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"sv=1&sig=` + testSig + `"}}`, "malformed: no expiry (se)"},
		{"sas bad expiry", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"se=tomorrow&sig=` + testSig + `"}}`, `expiry se="tomorrow"`},
		{"sas not a query", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"se=%zz&sig=` + testSig + `"}}`, "malformed: not a query string"},
		{"sas expired", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"` + sasToken(now.Add(-time.Minute)) + `"}}`, "SAS token expired at 2026-11-29T11:59:00Z"},
		{"sas blob only", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"ss=b&se=2030-01-01&sig=` + testSig + `"}}`, `ss="b", without t`},
		{"sas read only", `{"diagnostics":{"storage_account":"abc","storage_account_sas":"sp=r&se=2030-01-01&sig=` + testSig + `"}}`, `sp="r", without a (add)`},
		{"endpoint", `{"diagnostics":{"endpoint":"ftp://x"}}`, `azure.diagnostics.endpoint: "ftp://x" is not an http(s) URL`},
		{"endpoint with sas", `{"diagnostics":{"endpoint":"https://x/?sig=` + testSig + `"}}`, "not an http(s) URL without a query"},
		{"https-only sas on http", `{"diagnostics":{"storage_account":"abc","endpoint":"http://127.0.0.1:10002/devstoreaccount1","storage_account_sas":"spr=https&` + good + `"}}`, "AuthorizationProtocolMismatch"},
		{"unknown key", `{"diagnostic":{}}`, `unknown key "diagnostic"`},
		{"wrong type", `{"diagnostics":{"storage_account":5}}`, "azure.diagnostics.storage_account: want string, got JSON number"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(c.doc))
			if err == nil {
				err = cfg.Validate(now)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			var ce *ConfigError
			assert.True(t, errors.As(err, &ce), "a *ConfigError")
			assert.NotContains(t, err.Error(), testSig, "the SAS signature is never printed")
			assert.NotContains(t, err.Error(), "c2VjcmV0", "the SAS signature is never printed")
		})
	}
	cfg, err := ParseConfig([]byte(`{"diagnostics":{"storage_account":"abc","storage_account_sas":"` + sasToken(now.Add(-time.Minute)) + `"}}`))
	require.NoError(t, err)
	assert.ErrorIs(t, cfg.Validate(now), ErrSASExpired)
}

func TestConfigNeverPrintsSAS(t *testing.T) {
	cfg, err := ParseConfig([]byte(`{"diagnostics":{"storage_account":"abc","storage_account_sas":"se=2030-01-01&sig=` + testSig + `"}}`))
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v %#v %v", *cfg.Diagnostics, *cfg.Diagnostics, cfg.Diagnostics.StorageAccountSAS)} {
		assert.NotContains(t, s, testSig)
	}
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	assert.NotContains(t, string(b), testSig)
	assert.True(t, strings.Contains(string(b), redacted))
}

func TestVMAzureDefaults(t *testing.T) {
	assert.Equal(t, Identity{ResourceID: "vm1", Host: "vm1", DeploymentID: "unknown"}, VMAzure{}.Identity("vm1"))
	assert.Equal(t, Identity{ResourceID: "/s/r", Host: "h", DeploymentID: "d"}, VMAzure{ResourceID: "/s/r", Host: "h", DeploymentID: "d"}.Identity("vm1"))
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"diagnostics":{"storage_account":"abc","storage_account_sas":"se=2030-01-01&sig=x","metrics":{"sample_interval":"15"}}}`))
	f.Add([]byte(`{"diagnostics":{"metrics":{"transfer_interval":60}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		_ = cfg.Validate(time.Now())
	})
}
