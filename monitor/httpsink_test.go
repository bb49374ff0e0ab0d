package monitor

import (
	"strings"
	"testing"
)

func TestCheckHTTPSinkKeys(t *testing.T) {
	c, err := ParseConfig([]byte(`{"vms":[],"scenarios":[],"sinks":[
		{"kind":"http","url":"http://127.0.0.1:9/api/bundles","spool":"/tmp/s","token_file":"/t","ca_file":"/c"},
		{"kind":"http","url":"ftp://x","cert_file":"/c","spool_max_age":"-1h"},
		{"kind":"http","url":"http://x","spool":"/s","path":"/p"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Check(c, CheckOptions{})
	if err == nil {
		t.Fatal("bad http sinks accepted")
	}
	msg := err.Error()
	for _, want := range []string{`sinks[1].url: "ftp://x": want an http:// or https:// URL`, "sinks[1].spool: empty", "sinks[1].cert_file: cert_file and key_file go together",
		`sinks[1].spool_max_age: "-1h": want a positive duration`, "sinks[2]: path and pack belong to the dir sink"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "sinks[0]") {
		t.Errorf("the valid sink was refused:\n%s", msg)
	}
	if _, err := ParseConfig([]byte(`{"sinks":[{"kind":"http","uri":"x"}]}`)); err == nil || !strings.Contains(err.Error(), "sinks[0]") {
		t.Errorf("unknown key: %v", err)
	}
}
