package collector

// pageTemplates are the collector's HTML pages: server-rendered, no
// script, no external asset (styles inline, charts inline SVG).
const pageTemplates = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.}} · acpidiag collector</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 20px;max-width:1100px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #e3e3e3;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}
.class{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;background:#607d8b;font-size:12px}
.class.kernel-panic{background:#c62828}.class.lockup{background:#ef6c00}.class.hung-task{background:#8e24aa}.class.oom{background:#6d4c41}
.class.userspace-hang{background:#f9a825;color:#222}.class.powered-off{background:#546e7a}.class.unknown{background:#9e9e9e}
.verdict{font-weight:600}
.diag{background:#fff;border:1px solid #ddd;border-left:6px solid #c62828;padding:10px 14px;margin:12px 0}
.diag.low{border-left-color:#9e9e9e}
pre{background:#1e1e1e;color:#e6e6e6;padding:8px;overflow-x:auto;font:12px/1.35 ui-monospace,monospace;margin:4px 0 10px}
pre .ln{color:#888;user-select:none}
section{margin:18px 0}h2{font-size:16px;margin:0 0 6px}
svg{background:#fff;border:1px solid #ddd}
svg text{font:11px sans-serif;fill:#333}
.muted{color:#777}.err{color:#c62828}
</style></head><body><header><a href="/">acpidiag collector</a></header><main>{{end}}

{{define "foot"}}</main></body></html>{{end}}

{{define "svg"}}{{if .Empty}}<p class="muted">{{.Empty}}</p>{{else}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img">
{{range .Rects}}<rect x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" width="{{printf "%.1f" .W}}" height="{{printf "%.1f" .H}}" fill="{{.Fill}}">{{if .Title}}<title>{{esc .Title}}</title>{{end}}</rect>
{{end}}{{range .Lines}}<line x1="{{printf "%.1f" .X1}}" y1="{{printf "%.1f" .Y1}}" x2="{{printf "%.1f" .X2}}" y2="{{printf "%.1f" .Y2}}" stroke="{{.Stroke}}"/>
{{end}}{{if .Polyline}}<polyline points="{{.Polyline}}" fill="none" stroke="#c62828" stroke-width="2"/>
{{end}}{{range .Circles}}<circle cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="{{printf "%.1f" .R}}" fill="{{.Fill}}">{{if .Title}}<title>{{esc .Title}}</title>{{end}}</circle>
{{end}}{{range .Texts}}<text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" text-anchor="{{.Anchor}}">{{.Text}}</text>
{{end}}</svg>{{end}}{{end}}

{{define "fleet"}}{{template "head" "Fleet"}}
<h1>Fleet</h1>
<p class="muted">{{.Total}} incidents stored.</p>
<table id="fleet"><tr><th>VM</th><th>last verdict</th><th>incidents over time</th><th>last diagnosis</th></tr>
{{range .VMs}}<tr class="vm"><td><a href="#vm-{{.Name}}">{{esc .Name}}</a></td>
<td class="verdict">{{with .Last}}{{if .Verdict}}{{.Verdict}}{{else}}<span class="muted">—</span>{{end}}{{end}}</td>
<td>{{template "svg" .Spark}} {{.Incidents}}</td>
<td>{{with .Last}}<span class="class {{.Class}}">{{.Class}}</span> <a href="/incidents/{{.ID}}">{{esc .Summary}}</a><br><span class="muted">{{ts .Time}}</span>{{end}}</td></tr>
{{else}}<tr><td colspan="4" class="muted">no incident yet</td></tr>{{end}}
</table>
<section><h2>Recent incidents</h2>
<table><tr><th>time</th><th>VM</th><th>scenario</th><th>diagnosis</th></tr>
{{range .Recent}}<tr id="vm-{{.VM}}"><td>{{ts .Time}}</td><td>{{esc .VM}}</td><td>{{esc .Scenario}}</td>
<td><span class="class {{.Class}}">{{.Class}}</span> {{pct .Confidence}} <a href="/incidents/{{.ID}}">{{esc .Summary}}</a></td></tr>{{end}}
</table></section>
{{template "foot"}}{{end}}

{{define "incident"}}{{template "head" .D.ID}}{{$d := .D}}
<h1>Incident {{esc $d.ID}}</h1>
<p>VM <b>{{esc $d.VM}}</b>{{if $d.Scenario}}, scenario <b>{{esc $d.Scenario}}</b>{{end}}, trigger {{$d.Trigger}}, raised {{ts $d.Time}}{{with $d.Manifest.Host}} on host {{esc .}}{{end}}.
Last region verdict: <span class="verdict">{{if $d.Verdict}}{{$d.Verdict}}{{else}}—{{end}}</span>.</p>
{{with $d.Analysis.Diagnosis}}<div class="diag{{if not $.High}} low{{end}}" id="diagnosis">
<div><span class="class {{.Class}}" id="diagnosis-class">{{.Class}}</span> confidence {{pct .Confidence}}{{if .Analyzer}} <span class="muted">({{.Analyzer}})</span>{{end}}</div>
<p id="diagnosis-summary"><b>{{esc .Summary}}</b></p>
{{if .Details}}<table>{{range $k, $v := .Details}}<tr><th>{{$k}}</th><td>{{esc $v}}</td></tr>{{end}}</table>{{end}}
{{range .Evidence}}<div class="evidence">evidence: <a href="/incidents/{{$d.ID}}/files/{{.Artifact}}#L{{.First}}">{{.Artifact}} lines {{.First}}–{{.Last}}</a>
<pre>{{$f := .First}}{{range $i, $l := .Lines}}<span class="ln">{{add $f $i}} </span>{{esc $l}}
{{end}}</pre></div>{{end}}
</div>{{end}}
{{if gt (len $d.Analysis.Findings) 1}}<section><h2>Other findings</h2><table><tr><th>class</th><th>confidence</th><th>summary</th><th>analyzer</th></tr>
{{range $i, $f := $d.Analysis.Findings}}{{if $i}}<tr><td><span class="class {{$f.Class}}">{{$f.Class}}</span></td><td>{{pct $f.Confidence}}</td><td>{{esc $f.Summary}}</td><td>{{$f.Analyzer}}</td></tr>{{end}}{{end}}
</table></section>{{end}}
{{with $d.Analysis.Errors}}<p class="err">analyzer errors: {{range .}}{{esc .}}; {{end}}</p>{{end}}
<section><h2>Verdict timeline</h2>{{template "svg" .Timeline}}</section>
<section><h2>Heartbeat gap</h2>{{template "svg" .Gap}}</section>
<section><h2>Timeline entries</h2><table><tr><th>time</th><th>source</th><th>state</th><th>reason</th></tr>
{{range $d.Manifest.Timeline}}<tr><td>{{ts .Time}}</td><td>{{.Source}}</td><td>{{.State}}</td><td>{{esc .Reason}}</td></tr>{{end}}</table></section>
{{with $d.Manifest.ProbeHistory}}<section><h2>Probe history</h2><table><tr><th>start</th><th>ok</th><th>duration</th><th>detail / error</th></tr>
{{range .}}<tr><td>{{ts .Start}}</td><td>{{if .OK}}ok{{else}}<span class="err">fail</span>{{end}}</td><td>{{dur .Duration}}</td><td>{{esc .Detail}}{{esc .Error}}</td></tr>{{end}}</table></section>{{end}}
<section><h2>Artifacts</h2><table id="artifacts"><tr><th>file</th><th>diagnostic</th><th>size</th><th>took</th><th>error</th></tr>
<tr><td><a href="/incidents/{{$d.ID}}/files/manifest.json">manifest.json</a></td><td>manifest</td><td></td><td></td><td></td></tr>
{{range .Artifacts}}<tr><td>{{if .Name}}<a href="/incidents/{{$d.ID}}/files/{{.Name}}">{{.Name}}</a>{{else}}<span class="muted">—</span>{{end}}</td><td>{{.Diagnostic}}</td><td>{{.Size}}</td><td>{{dur .Duration}}</td><td class="err">{{esc .Error}}</td></tr>{{end}}
</table></section>
{{template "foot"}}{{end}}

{{define "artifact"}}{{template "head" .A.Name}}
<p><a href="/incidents/{{.ID}}">← incident {{.ID}}</a> · <a href="/incidents/{{.ID}}/raw/{{.A.Name}}">raw</a></p>
<h1>{{.A.Name}}</h1><p class="muted">{{.A.Diagnostic}}, {{.Size}} bytes{{if .A.Guest}}, guest text (control bytes shown escaped){{end}}</p>
{{if .Binary}}<p>Binary artifact: <a href="/incidents/{{.ID}}/raw/{{.A.Name}}">download</a>.</p>{{else}}<pre>{{range $i, $l := .Lines}}<span class="ln" id="L{{add $i 1}}">{{add $i 1}} </span>{{$l}}
{{end}}</pre>{{end}}
{{template "foot"}}{{end}}
`
