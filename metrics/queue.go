package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Batch is one VM's window, ready to upload as one batch transaction: the
// LAD entities of the window (Entities) and the transfer period that names
// the table.
type Batch struct {
	VM          string        `json:"vm"`
	WindowStart time.Time     `json:"window_start"`
	Period      time.Duration `json:"period"`
	Entities    []Entity      `json:"entities"`
}

// batchFile is the on-disk form (Entity's own JSON is the Table service
// form; the queue stores plain fields).
type batchFile struct {
	VM          string        `json:"vm"`
	WindowStart time.Time     `json:"window_start"`
	Period      time.Duration `json:"period"`
	Entities    []entityFile  `json:"entities"`
}

type entityFile struct {
	PartitionKey, RowKey, CounterName      string
	Total, Minimum, Maximum, Average, Last float64
	Count                                  int64
	Timestamp                              time.Time
	DeploymentID, Host                     string
}

// Queue is a bounded on-disk FIFO of batches: one file per batch in a
// directory, written to a temporary name, synced and renamed, so a crash
// leaves either the whole batch or none of it, and a restarted process
// finds every batch it had not yet removed, in order. When Max batches are
// queued, Push drops the oldest (counted in Dropped). Safe for concurrent
// use.
type Queue struct {
	dir string
	max int

	mu      sync.Mutex
	seqs    []uint64 // queued, oldest first
	next    uint64
	dropped uint64
}

// QueueError reports a queue file that cannot be read back.
type QueueError struct {
	Path string
	Err  error
}

func (e *QueueError) Error() string { return "metrics: queue file " + e.Path + ": " + e.Err.Error() }
func (e *QueueError) Unwrap() error { return e.Err }

const queueSuffix = ".batch.json"

// OpenQueue opens (creating it if needed) the queue in dir, holding at most
// max batches (max >= 1). Leftover temporary files of an interrupted Push
// are removed.
func OpenQueue(dir string, max int) (*Queue, error) {
	if max < 1 {
		return nil, fmt.Errorf("metrics: queue bound %d: want at least 1", max)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("metrics: queue: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("metrics: queue: %w", err)
	}
	q := &Queue{dir: dir, max: max}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		num, ok := strings.CutSuffix(name, queueSuffix)
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		q.seqs = append(q.seqs, seq)
	}
	sort.Slice(q.seqs, func(i, j int) bool { return q.seqs[i] < q.seqs[j] })
	if n := len(q.seqs); n > 0 {
		q.next = q.seqs[n-1] + 1
	}
	return q, nil
}

func (q *Queue) path(seq uint64) string {
	return filepath.Join(q.dir, fmt.Sprintf("%020d%s", seq, queueSuffix))
}

// Len returns the number of queued batches.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.seqs)
}

// Dropped returns how many batches Push dropped because the queue was full.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Push appends a batch durably. When the queue is full the oldest batch is
// removed first and counted in Dropped.
func (q *Queue) Push(b Batch) error { return q.PushAll([]Batch{b}) }

// PushAll appends batches durably, in order, with two file system syncs
// for the whole set (syncfs after writing the files and after renaming
// them) instead of one fsync per batch. When the queue would overflow the
// oldest batches are removed first and counted in Dropped.
func (q *Queue) PushAll(bs []Batch) error {
	if len(bs) == 0 {
		return nil
	}
	datas := make([][]byte, len(bs))
	for i, b := range bs {
		f := batchFile{VM: b.VM, WindowStart: b.WindowStart, Period: b.Period}
		for _, e := range b.Entities {
			f.Entities = append(f.Entities, entityFile(e))
		}
		data, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("metrics: queue: %w", err)
		}
		datas[i] = data
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// Keep the newest max batches of queue+bs.
	if skip := len(bs) - q.max; skip > 0 {
		datas = datas[skip:]
		q.dropped += uint64(skip)
	}
	for len(q.seqs)+len(datas) > q.max {
		if err := os.Remove(q.path(q.seqs[0])); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("metrics: queue: dropping the oldest batch: %w", err)
		}
		q.seqs = q.seqs[1:]
		q.dropped++
	}
	tmps := make([]string, 0, len(datas))
	cleanup := func() {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}
	for _, data := range datas {
		tmp, err := os.CreateTemp(q.dir, ".tmp-")
		if err != nil {
			cleanup()
			return fmt.Errorf("metrics: queue: %w", err)
		}
		tmps = append(tmps, tmp.Name())
		_, werr := tmp.Write(data)
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			cleanup()
			return fmt.Errorf("metrics: queue: writing batch: %w", werr)
		}
	}
	d, err := os.Open(q.dir)
	if err != nil {
		cleanup()
		return fmt.Errorf("metrics: queue: %w", err)
	}
	defer d.Close()
	if err := syncFS(d); err != nil {
		cleanup()
		return fmt.Errorf("metrics: queue: sync: %w", err)
	}
	for i, t := range tmps {
		seq := q.next
		if err := os.Rename(t, q.path(seq)); err != nil {
			for _, r := range tmps[i:] {
				_ = os.Remove(r)
			}
			return fmt.Errorf("metrics: queue: %w", err)
		}
		q.seqs = append(q.seqs, seq)
		q.next = seq + 1
	}
	if err := syncFS(d); err != nil {
		return fmt.Errorf("metrics: queue: sync: %w", err)
	}
	return nil
}

// Peek returns the oldest batch and its sequence number; ok is false when
// the queue is empty.
func (q *Queue) Peek() (b Batch, seq uint64, ok bool, err error) {
	items := q.PeekN(1)
	if len(items) == 0 {
		return Batch{}, 0, false, nil
	}
	return items[0].Batch, items[0].Seq, true, items[0].Err
}

// Queued is one batch read back from the queue.
type Queued struct {
	Batch Batch
	Seq   uint64
	// Err is a *QueueError when the file cannot be read back.
	Err error
}

// PeekN returns up to n of the oldest batches, oldest first, without
// removing them.
func (q *Queue) PeekN(n int) []Queued {
	q.mu.Lock()
	seqs := append([]uint64(nil), q.seqs[:min(n, len(q.seqs))]...)
	q.mu.Unlock()
	out := make([]Queued, 0, len(seqs))
	for _, seq := range seqs {
		b, err := q.read(seq)
		out = append(out, Queued{Batch: b, Seq: seq, Err: err})
	}
	return out
}

func (q *Queue) read(seq uint64) (Batch, error) {
	p := q.path(seq)
	data, err := os.ReadFile(p)
	if err != nil {
		return Batch{}, &QueueError{p, err}
	}
	var f batchFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Batch{}, &QueueError{p, err}
	}
	b := Batch{VM: f.VM, WindowStart: f.WindowStart, Period: f.Period}
	for _, e := range f.Entities {
		b.Entities = append(b.Entities, Entity(e))
	}
	return b, nil
}

// Remove deletes batch seq (after it was uploaded, or when it cannot be
// read back).
func (q *Queue) Remove(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, s := range q.seqs {
		if s == seq {
			if err := os.Remove(q.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("metrics: queue: %w", err)
			}
			q.seqs = append(q.seqs[:i], q.seqs[i+1:]...)
			return nil
		}
	}
	return nil
}
