package collector

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/hostreader"
	"github.com/acpidiag/acpidiag/monitor"
	"github.com/acpidiag/acpidiag/monitor/deliver"
)

// ServerOptions configure the HTTP handler.
type ServerOptions struct {
	// Token, when set, is the bearer token POST /api/bundles requires.
	Token string
}

// Server serves the collector's API and pages over a Store.
type Server struct {
	store *Store
	opts  ServerOptions
	mux   *http.ServeMux
}

// NewServer returns the collector's HTTP handler:
//
//	POST /api/bundles            store a bundle (201 stored, 200 duplicate)
//	GET  /api/vms                the fleet
//	GET  /api/stats              bundles stored, duplicates, refused since start
//	GET  /api/incidents?vm=NAME&class=CLASS  incidents, newest first (both filters optional)
//	GET  /api/incidents/{id}     one incident: manifest and analysis
//	GET  /                       fleet page
//	GET  /incidents/{id}         incident page
//	GET  /incidents/{id}/files/{name}      an artifact as a page
//	GET  /incidents/{id}/raw/{name}        an artifact's bytes
func NewServer(st *Store, opts ServerOptions) *Server {
	s := &Server{store: st, opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /api/bundles", s.postBundle)
	s.mux.HandleFunc("GET /api/vms", s.apiVMs)
	s.mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, st.Stats()) })
	s.mux.HandleFunc("GET /api/incidents", s.apiIncidents)
	s.mux.HandleFunc("GET /api/incidents/{id}", s.apiIncident)
	s.mux.HandleFunc("GET /{$}", s.fleetPage)
	s.mux.HandleFunc("GET /incidents/{id}", s.incidentPage)
	s.mux.HandleFunc("GET /incidents/{id}/files/{name...}", s.artifactPage)
	s.mux.HandleFunc("GET /incidents/{id}/raw/{name...}", s.artifactRaw)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	s.mux.ServeHTTP(w, r)
}

// PostResult is the answer to POST /api/bundles.
type PostResult struct {
	ID      string `json:"id"`
	Created bool   `json:"created"`
	Class   string `json:"class,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (s *Server) postBundle(w http.ResponseWriter, r *http.Request) {
	if s.opts.Token != "" {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, PostResult{Error: "missing or wrong bearer token"})
			return
		}
	}
	body := http.MaxBytesReader(w, r.Body, s.store.opts.Limits.Compressed)
	inc, created, err := s.store.Put(r.Context(), body, r.Header.Get(deliver.HeaderIdempotencyKey))
	if err != nil {
		code := http.StatusInternalServerError
		var be *BundleError
		var mb *http.MaxBytesError
		switch {
		case errors.As(err, &mb):
			code = http.StatusRequestEntityTooLarge
		case errors.As(err, &be) && be.TooLarge:
			code = http.StatusRequestEntityTooLarge
		case errors.As(err, &be):
			code = http.StatusBadRequest
		}
		writeJSON(w, code, PostResult{Error: err.Error()})
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, PostResult{ID: inc.ID, Created: created, Class: inc.Class})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

func (s *Server) apiVMs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.store.VMs())
}

func (s *Server) apiIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	out := s.store.Incidents(q.Get("vm"))
	if class := q.Get("class"); class != "" {
		kept := []Incident{}
		for _, inc := range out {
			if inc.Class == class {
				kept = append(kept, inc)
			}
		}
		out = kept
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiIncident(w http.ResponseWriter, r *http.Request) {
	d, err := s.store.Incident(r.PathValue("id"))
	if err != nil {
		writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func statusOf(err error) int {
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// --- pages ---

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		fmt.Fprintf(w, "<p>template error: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

type fleetRow struct {
	VMSummary
	Spark svgChart
}

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request) {
	vms := s.store.VMs()
	var t0, t1 time.Time
	for _, v := range vms {
		for _, t := range v.Times {
			if t0.IsZero() || t.Before(t0) {
				t0 = t
			}
			if t.After(t1) {
				t1 = t
			}
		}
	}
	var rows []fleetRow
	for _, v := range vms {
		rows = append(rows, fleetRow{VMSummary: v, Spark: sparkline(v.Times, t0, t1)})
	}
	recent := s.store.Incidents("")
	if len(recent) > 20 {
		recent = recent[:20]
	}
	s.render(w, "fleet", map[string]any{"VMs": rows, "Recent": recent, "Total": s.store.Len()})
}

type artifactRow struct {
	monitor.Artifact
	Text bool
}

func (s *Server) incidentPage(w http.ResponseWriter, r *http.Request) {
	d, err := s.store.Incident(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	var arts []artifactRow
	for _, a := range d.Manifest.Artifacts {
		arts = append(arts, artifactRow{Artifact: a, Text: isText(a.Name)})
	}
	b := &Bundle{Dir: s.store.BundleDir(d.ID), Manifest: d.Manifest}
	s.render(w, "incident", map[string]any{
		"D":         d,
		"Timeline":  timelineChart(d.Manifest),
		"Gap":       gapChart(b),
		"Artifacts": arts,
		"High":      d.Analysis.Diagnosis.Confidence >= HighConfidence,
	})
}

func isText(name string) bool {
	return strings.HasSuffix(name, ".txt") || strings.HasSuffix(name, ".json")
}

func (s *Server) artifactFile(r *http.Request) (string, *monitor.Artifact, error) {
	id, name := r.PathValue("id"), r.PathValue("name")
	d, err := s.store.Incident(id)
	if err != nil {
		return "", nil, err
	}
	for i, a := range d.Manifest.Artifacts {
		if a.Name == name && name != "" {
			return filepath.Join(s.store.BundleDir(id), filepath.FromSlash(name)), &d.Manifest.Artifacts[i], nil
		}
	}
	if name == "manifest.json" {
		return filepath.Join(s.store.BundleDir(id), name), &monitor.Artifact{Name: name, Diagnostic: "manifest"}, nil
	}
	return "", nil, ErrNotFound
}

func (s *Server) artifactRaw(w http.ResponseWriter, r *http.Request) {
	p, a, err := s.artifactFile(r)
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	ct := "application/octet-stream"
	if isText(a.Name) {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	http.ServeFile(w, r, p)
}

func (s *Server) artifactPage(w http.ResponseWriter, r *http.Request) {
	p, a, err := s.artifactFile(r)
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	data, err := os.ReadFile(p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var lines []string
	binary := !isText(a.Name)
	if !binary {
		// Guest text: control bytes are shown escaped (once, here);
		// html/template escapes the HTML.
		lines = strings.Split(strings.TrimSuffix(hostreader.EscapeLog(string(data)), "\n"), "\n")
		if len(lines) > 20000 {
			lines = lines[len(lines)-20000:]
		}
	}
	s.render(w, "artifact", map[string]any{"ID": r.PathValue("id"), "A": a, "Lines": lines, "Binary": binary, "Size": len(data)})
}

// esc shows guest text with control bytes escaped (html/template then
// escapes the HTML).
func esc(s string) string { return hostreader.EscapeLog(s) }

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"esc":  esc,
	"pct":  func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"ts":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z") },
	"dur":  func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"add":  func(a, b int) int { return a + b },
	"high": func(f float64) bool { return f >= HighConfidence },
}).Parse(pageTemplates))

// ServerTLS returns the TLS configuration of a collector serving HTTPS
// with certFile/keyFile, requiring client certificates signed by the CAs
// of clientCAFile when it is set (client TLS, the sink's cert_file and
// key_file). All empty: nil (plain HTTP).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("collector: tls: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("collector: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("collector: client CA %s: no PEM certificate in it", clientCAFile)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}
