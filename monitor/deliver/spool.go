// Package deliver sends incident bundles to a collector over HTTP from an
// on-disk spool: a bundle is first written to the spool (fsync, atomic
// rename), then POSTed as .tar.gz with retries (capped exponential backoff
// with jitter), in order per VM. The spool is bounded by size and age; the
// oldest bundles are dropped first and every drop is counted. A process
// killed at any point (kill -9) loses no spooled bundle: on restart the
// spool is read back and delivery resumes; a bundle that reached the
// collector just before the kill is sent again, and the collector answers
// 200 (duplicate) for its idempotency key.
//
// docs/collector.md describes the spool and the headers.
package deliver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names sent with every bundle.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderVM             = "X-Acpidiag-VM"
	HeaderScenario       = "X-Acpidiag-Scenario"
	ContentType          = "application/gzip"
)

// spoolMagic starts every spool file: the magic line, a JSON meta line,
// then the .tar.gz body.
const spoolMagic = "ACPIDIAG-SPOOL 1\n"

// Defaults of Config's zero values.
const (
	DefaultMaxBytes   = 1 << 30
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
	DefaultTimeout    = 2 * time.Minute
	DefaultParallel   = 4
)

// Config configures a Spool. URL and Dir are required.
type Config struct {
	// URL is the collector endpoint (http://HOST:PORT/api/bundles).
	URL string
	// Dir is the spool directory (created when missing).
	Dir string
	// TokenFile holds a bearer token (read at each attempt, so it can be
	// rotated; surrounding white space is ignored).
	TokenFile string
	// CAFile is a PEM bundle that replaces the system roots for https.
	CAFile string
	// CertFile and KeyFile are a client certificate (PEM), both or neither.
	CertFile, KeyFile string
	// MaxBytes bounds the spool's size (default 1 GiB); MaxAge the age of
	// a spooled bundle (default 7 days). The oldest go first, counted.
	MaxBytes int64
	MaxAge   time.Duration
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// failed attempt of the same bundle (defaults 1 s and 1 min); each
	// delay is drawn uniformly from [d/2, d].
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one POST (default 2 min).
	Timeout time.Duration
	// Parallel is how many VMs are delivered at once (default 4). One
	// VM's bundles go one at a time, oldest first.
	Parallel int
	// Client replaces the HTTP client built from the TLS options (tests).
	Client *http.Client
}

// Meta is what the spool keeps about one bundle besides its bytes.
type Meta struct {
	ID       string    `json:"id"`
	VM       string    `json:"vm"`
	Scenario string    `json:"scenario,omitempty"`
	Spooled  time.Time `json:"spooled"`
}

// Status is the spool's state. The counters survive restarts (they are
// kept in DIR/status.json).
type Status struct {
	URL string `json:"url"`
	Dir string `json:"dir"`
	// Queued is how many bundles wait in the spool (Retrying included),
	// QueuedBytes their size.
	Queued      int   `json:"queued"`
	QueuedBytes int64 `json:"queued_bytes"`
	// Retrying is how many of them failed at least once since the spool
	// was opened; LastError is the last failure.
	Retrying      int       `json:"retrying"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitempty"`
	// Delivered counts bundles the collector accepted (201 or 200).
	Delivered     int64     `json:"delivered"`
	LastDelivered time.Time `json:"last_delivered,omitempty"`
	// Dropped counts bundles removed without delivery: by the size or age
	// bound, or refused by the collector (a 4xx answer other than 408 and
	// 429). LastDropped says which and why.
	Dropped     int64  `json:"dropped"`
	LastDropped string `json:"last_dropped,omitempty"`
	// Updated is when the status was written.
	Updated time.Time `json:"updated"`
}

// PermanentError is a collector's refusal that a retry cannot fix.
type PermanentError struct {
	Code int
	Body string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("collector refused the bundle: HTTP %d: %s", e.Code, e.Body)
}

type item struct {
	Meta
	seq  uint64
	path string
	size int64
	// attempts since the spool was opened; next is when to try again.
	attempts int
	next     time.Time
	lastErr  string
}

// Spool is an HTTP delivery queue on disk. Its methods are safe for
// concurrent use.
type Spool struct {
	cfg    Config
	client *http.Client

	mu      sync.Mutex
	items   map[string]*item   // by id
	byVM    map[string][]*item // oldest first
	active  map[string]bool    // VMs with a running lane
	seq     uint64
	st      Status // counters; Queued etc. are computed
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sem     chan struct{}
	randMu  sync.Mutex
	rnd     *rand.Rand
	statusW sync.Mutex
}

// Open opens (or creates) the spool directory, reads back what a previous
// process left there and starts delivering.
func Open(cfg Config) (*Spool, error) {
	if cfg.URL == "" {
		return nil, errors.New("deliver: url is empty")
	}
	if cfg.Dir == "" {
		return nil, errors.New("deliver: spool directory is empty")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = DefaultMaxBackoff
		if cfg.MaxBackoff < cfg.MinBackoff {
			cfg.MaxBackoff = cfg.MinBackoff
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultParallel
	}
	client := cfg.Client
	if client == nil {
		var err error
		if client, err = NewClient(cfg.CAFile, cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "queue"), filepath.Join(cfg.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("deliver: spool: %w", err)
		}
	}
	s := &Spool{cfg: cfg, client: client, items: map[string]*item{}, byVM: map[string][]*item{}, active: map[string]bool{},
		sem: make(chan struct{}, cfg.Parallel), rnd: rand.New(rand.NewSource(time.Now().UnixNano()))}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Lock()
	s.enforceLocked(time.Now())
	for vm := range s.byVM {
		s.startLaneLocked(vm)
	}
	s.mu.Unlock()
	s.writeStatus()
	s.wg.Add(1)
	go s.janitor()
	return s, nil
}

// NewClient returns an HTTP client for the TLS options: caFile replaces
// the system roots, certFile+keyFile is a client certificate. All empty:
// http.DefaultTransport's settings.
func NewClient(caFile, certFile, keyFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("deliver: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("deliver: ca_file %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("deliver: cert_file and key_file go together")
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("deliver: cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr}, nil
}

// load reads the spool directory: partial files from a killed writer are
// removed, queued files are indexed in sequence order.
func (s *Spool) load() error {
	tmp := filepath.Join(s.cfg.Dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("deliver: spool: %w", err)
	}
	for _, e := range ents {
		os.Remove(filepath.Join(tmp, e.Name()))
	}
	if b, err := os.ReadFile(filepath.Join(s.cfg.Dir, "status.json")); err == nil {
		var st Status
		if json.Unmarshal(b, &st) == nil {
			s.st.Delivered, s.st.LastDelivered, s.st.Dropped, s.st.LastDropped = st.Delivered, st.LastDelivered, st.Dropped, st.LastDropped
		}
	}
	q := filepath.Join(s.cfg.Dir, "queue")
	ents, err = os.ReadDir(q)
	if err != nil {
		return fmt.Errorf("deliver: spool: %w", err)
	}
	var its []*item
	for _, e := range ents {
		p := filepath.Join(q, e.Name())
		seq, ok := parseSeq(e.Name())
		if !ok {
			continue // not ours
		}
		m, err := readMeta(p)
		if err != nil {
			// Cannot happen for a file that was renamed into place after
			// its fsync; refuse to guess, count it and move it aside.
			s.st.Dropped++
			s.st.LastDropped = fmt.Sprintf("%s: unreadable spool file: %v", e.Name(), err)
			os.Rename(p, filepath.Join(s.cfg.Dir, e.Name()+".bad"))
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		its = append(its, &item{Meta: *m, seq: seq, path: p, size: fi.Size()})
		if seq > s.seq {
			s.seq = seq
		}
	}
	sort.Slice(its, func(i, j int) bool { return its[i].seq < its[j].seq })
	for _, it := range its {
		if _, dup := s.items[it.ID]; dup {
			os.Remove(it.path) // the same bundle spooled twice: keep the older
			continue
		}
		s.items[it.ID] = it
		s.byVM[it.VM] = append(s.byVM[it.VM], it)
	}
	return nil
}

func parseSeq(name string) (uint64, bool) {
	if !strings.HasSuffix(name, ".spool") {
		return 0, false
	}
	i := strings.IndexByte(name, '-')
	if i <= 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(name[:i], 10, 64)
	return n, err == nil
}

// readMeta reads a spool file's header.
func readMeta(path string) (*Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, _, err := DecodeHeader(bufio.NewReaderSize(f, 4096))
	return m, err
}

// DecodeHeader reads a spool file's magic and meta lines from r and
// returns the meta and the header's length in bytes.
func DecodeHeader(r *bufio.Reader) (*Meta, int64, error) {
	magic, err := r.ReadString('\n')
	if err != nil || magic != spoolMagic {
		return nil, 0, fmt.Errorf("spool header: offset 0: want %q", strings.TrimSpace(spoolMagic))
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, 0, fmt.Errorf("spool header: offset %d: meta line: %w", len(magic), err)
	}
	var m Meta
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, 0, fmt.Errorf("spool header: offset %d: meta: %w", len(magic), err)
	}
	if m.ID == "" {
		return nil, 0, fmt.Errorf("spool header: offset %d: meta: id is empty", len(magic))
	}
	return &m, int64(len(magic) + len(line)), nil
}

// Has reports whether the bundle id is in the spool.
func (s *Spool) Has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.items[id]
	return ok
}

// Add spools one bundle: write (the .tar.gz stream) is called to produce
// its bytes. When Add returns nil the bundle is on disk (fsynced, renamed
// into the queue, the directory fsynced) and will be delivered, also after
// a restart. A bundle whose id is already spooled is not added again.
func (s *Spool) Add(m Meta, write func(io.Writer) error) error {
	if m.ID == "" || strings.ContainsAny(m.ID, "/\\\x00") || m.ID == "." || m.ID == ".." {
		return fmt.Errorf("deliver: bad bundle id %q", m.ID)
	}
	if s.Has(m.ID) {
		return nil
	}
	if m.Spooled.IsZero() {
		m.Spooled = time.Now().UTC()
	}
	hdr, err := json.Marshal(&m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.cfg.Dir, "tmp"), "add-*")
	if err != nil {
		return fmt.Errorf("deliver: spool: %w", err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("deliver: spool %s: %w", m.ID, err)
	}
	bw := bufio.NewWriterSize(tmp, 256<<10)
	bw.WriteString(spoolMagic)
	bw.Write(hdr)
	bw.WriteByte('\n')
	if err := write(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if fi.Size() > s.cfg.MaxBytes {
		os.Remove(tmp.Name())
		return fmt.Errorf("deliver: spool %s: %d bytes exceed the spool's bound of %d bytes", m.ID, fi.Size(), s.cfg.MaxBytes)
	}
	s.mu.Lock()
	if _, dup := s.items[m.ID]; dup || s.closed {
		s.mu.Unlock()
		os.Remove(tmp.Name())
		if dup {
			return nil
		}
		return errors.New("deliver: spool closed")
	}
	s.seq++
	it := &item{Meta: m, seq: s.seq, size: fi.Size()}
	it.path = filepath.Join(s.cfg.Dir, "queue", fmt.Sprintf("%020d-%s.spool", it.seq, m.ID))
	if err := os.Rename(tmp.Name(), it.path); err != nil {
		s.mu.Unlock()
		os.Remove(tmp.Name())
		return fmt.Errorf("deliver: spool %s: %w", m.ID, err)
	}
	if err := SyncDir(filepath.Join(s.cfg.Dir, "queue")); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("deliver: spool %s: %w", m.ID, err)
	}
	s.items[m.ID] = it
	s.byVM[m.VM] = append(s.byVM[m.VM], it)
	s.enforceLocked(time.Now())
	s.startLaneLocked(m.VM)
	s.mu.Unlock()
	s.writeStatus()
	return nil
}

// SyncDir fsyncs a directory (after a rename or a file creation in it).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// enforceLocked drops bundles older than MaxAge, then the oldest until the
// spool fits MaxBytes. Each drop is counted.
func (s *Spool) enforceLocked(now time.Time) {
	var all []*item
	var total int64
	for _, it := range s.items {
		all = append(all, it)
		total += it.size
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	for _, it := range all {
		switch {
		case now.Sub(it.Spooled) > s.cfg.MaxAge:
			s.dropLocked(it, fmt.Sprintf("older than the spool's max age %s", s.cfg.MaxAge))
		case total > s.cfg.MaxBytes:
			s.dropLocked(it, fmt.Sprintf("spool over its bound of %d bytes", s.cfg.MaxBytes))
		default:
			continue
		}
		total -= it.size
	}
}

func (s *Spool) dropLocked(it *item, why string) {
	s.removeLocked(it)
	s.st.Dropped++
	s.st.LastDropped = it.ID + ": " + why
}

func (s *Spool) removeLocked(it *item) {
	if s.items[it.ID] != it {
		return
	}
	delete(s.items, it.ID)
	q := s.byVM[it.VM]
	for i, x := range q {
		if x == it {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(s.byVM, it.VM)
	} else {
		s.byVM[it.VM] = q
	}
	os.Remove(it.path)
	SyncDir(filepath.Dir(it.path)) //nolint:errcheck // a resend after a crash is answered 200 by the collector
}

func (s *Spool) startLaneLocked(vm string) {
	if s.active[vm] || s.closed || len(s.byVM[vm]) == 0 || s.ctx == nil {
		return
	}
	s.active[vm] = true
	s.wg.Add(1)
	go s.lane(vm)
}

// lane delivers one VM's bundles, oldest first, one at a time.
func (s *Spool) lane(vm string) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		q := s.byVM[vm]
		if len(q) == 0 || s.closed {
			delete(s.active, vm)
			s.mu.Unlock()
			return
		}
		it := q[0]
		wait := time.Until(it.next)
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				t.Stop()
				continue
			case <-t.C:
			}
		}
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			continue
		}
		err := s.post(it)
		<-s.sem
		s.mu.Lock()
		if s.items[it.ID] != it { // dropped meanwhile
			s.mu.Unlock()
			continue
		}
		var perm *PermanentError
		switch {
		case err == nil:
			s.removeLocked(it)
			s.st.Delivered++
			s.st.LastDelivered = time.Now().UTC()
		case s.ctx.Err() != nil:
			// closing: leave it spooled, untouched
		case errors.As(err, &perm):
			s.dropLocked(it, err.Error())
		default:
			it.attempts++
			it.lastErr = err.Error()
			it.next = time.Now().Add(s.backoff(it.attempts))
			s.st.LastError = it.ID + ": " + err.Error()
			s.st.LastErrorTime = time.Now().UTC()
		}
		s.mu.Unlock()
		s.writeStatus()
	}
}

// backoff is the delay before attempt n+1: MinBackoff doubled per failed
// attempt, capped at MaxBackoff, drawn from [d/2, d].
func (s *Spool) backoff(n int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	if d > s.cfg.MaxBackoff {
		d = s.cfg.MaxBackoff
	}
	s.randMu.Lock()
	j := time.Duration(s.rnd.Int63n(int64(d/2) + 1))
	s.randMu.Unlock()
	return d/2 + j
}

// post sends one spooled bundle.
func (s *Spool) post(it *item) error {
	f, err := os.Open(it.path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	_, off, err := DecodeHeader(br)
	if err != nil {
		return err
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, f)
	if err != nil {
		return &PermanentError{Body: err.Error()}
	}
	req.ContentLength = it.size - off
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set(HeaderIdempotencyKey, it.ID)
	req.Header.Set(HeaderVM, it.VM)
	if it.Scenario != "" {
		req.Header.Set(HeaderScenario, it.Scenario)
	}
	if s.cfg.TokenFile != "" {
		tok, err := os.ReadFile(s.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(tok)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests &&
		resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden:
		return &PermanentError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// janitor applies the age bound and rewrites the status file once a
// second, and wakes lanes that were left idle.
func (s *Spool) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.enforceLocked(time.Now())
		for vm := range s.byVM {
			s.startLaneLocked(vm)
		}
		s.mu.Unlock()
		s.writeStatus()
	}
}

// Status returns the spool's state now.
func (s *Spool) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Spool) statusLocked() Status {
	st := s.st
	st.URL, st.Dir = s.cfg.URL, s.cfg.Dir
	for _, it := range s.items {
		st.Queued++
		st.QueuedBytes += it.size
		if it.attempts > 0 {
			st.Retrying++
		}
	}
	st.Updated = time.Now().UTC()
	return st
}

// writeStatus writes DIR/status.json atomically (ReadStatus reads it from
// another process: `diagmon status`).
func (s *Spool) writeStatus() {
	s.statusW.Lock()
	defer s.statusW.Unlock()
	st := s.Status()
	b, _ := json.MarshalIndent(&st, "", "  ")
	p := filepath.Join(s.cfg.Dir, "status.json")
	tmp := filepath.Join(s.cfg.Dir, "tmp", "status.json")
	if os.WriteFile(tmp, append(b, '\n'), 0o644) == nil {
		os.Rename(tmp, p)
	}
}

// ReadStatus reads the status of the spool in dir as its process last
// wrote it, with Queued and QueuedBytes counted from the queue directory
// now (so it is right also when no process runs).
func ReadStatus(dir string) (Status, error) {
	var st Status
	b, err := os.ReadFile(filepath.Join(dir, "status.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("deliver: status: %w", err)
	}
	if err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("deliver: %s/status.json: %w", dir, err)
		}
	}
	st.Dir = dir
	ents, err := os.ReadDir(filepath.Join(dir, "queue"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("deliver: status: %w", err)
	}
	st.Queued, st.QueuedBytes = 0, 0
	for _, e := range ents {
		if _, ok := parseSeq(e.Name()); !ok {
			continue
		}
		if fi, err := e.Info(); err == nil {
			st.Queued++
			st.QueuedBytes += fi.Size()
		}
	}
	if st.Retrying > st.Queued {
		st.Retrying = st.Queued
	}
	return st, nil
}

// Flush waits until the spool is empty or ctx ends.
func (s *Spool) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := len(s.items)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deliver: %d bundles still spooled: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops delivery; what was not delivered stays spooled for the next
// Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.writeStatus()
	return nil
}
