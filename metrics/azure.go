package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
)

// MaxBatchEntities is Azure Table storage's limit of operations in one
// batch transaction.
const MaxBatchEntities = 100

// TableSink writes batches to Azure Table storage (or Azurite) with the
// account's SAS token: the table is created when missing (409, it already
// exists, is fine) and each batch is one transaction of upserts
// (InsertReplace), so a batch retried after an unknown outcome is stored
// once.
type TableSink struct {
	svc *aztables.ServiceClient
	now func() time.Time

	mu      sync.Mutex
	created map[string]bool
}

// SinkOptions tune a TableSink.
type SinkOptions struct {
	// Now is the clock that picks the 10-day table (default time.Now; LAD
	// names the table from the time of writing).
	Now func() time.Time
	// Timeout bounds each HTTP try (default 30 s); Retries is the SDK's
	// retry count per call (default 2: the queue retries as well).
	Timeout time.Duration
	Retries int32
	// Transport replaces the HTTP transport (tests).
	Transport policy.Transporter
}

// NewTableSink returns a sink for the configured account: the table
// endpoint (Diagnostics.TableEndpoint) authorised with the SAS token.
func NewTableSink(d Diagnostics, opts SinkOptions) (*TableSink, error) {
	tok := d.StorageAccountSAS.Token()
	if tok == "" {
		return nil, &ConfigError{Path: "azure.diagnostics.storage_account_sas", Msg: "required for the table sink"}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Retries == 0 {
		opts.Retries = 2
	}
	co := &aztables.ClientOptions{}
	co.Retry.MaxRetries = opts.Retries
	co.Retry.TryTimeout = opts.Timeout
	co.Retry.RetryDelay = 200 * time.Millisecond
	co.Retry.MaxRetryDelay = 2 * time.Second
	if opts.Transport != nil {
		co.Transport = opts.Transport
	}
	svc, err := aztables.NewServiceClientWithNoCredential(d.TableEndpoint()+"/?"+tok, co)
	if err != nil {
		// The URL holds the SAS: do not quote the SDK's message.
		return nil, &ConfigError{Path: "azure.diagnostics.endpoint", Msg: "cannot build the table client from the endpoint and SAS"}
	}
	return &TableSink{svc: svc, now: opts.Now, created: map[string]bool{}}, nil
}

// UploadError reports a failed table operation: the table, the HTTP
// status and the service's error code. Its text never holds the request
// URL (which carries the SAS).
type UploadError struct {
	Op     string // "create table", "batch"
	Table  string
	Status int    // HTTP status, 0 when none was received
	Code   string // service error code, e.g. "AuthenticationFailed"
	Err    error
}

func (e *UploadError) Error() string {
	s := fmt.Sprintf("metrics: %s %s", e.Op, e.Table)
	switch {
	case e.Status == http.StatusForbidden:
		s += fmt.Sprintf(": HTTP 403 %s: the SAS token was refused (wrong, expired or without table add/create rights)", e.Code)
	case e.Status != 0:
		s += fmt.Sprintf(": HTTP %d %s", e.Status, e.Code)
	default:
		var ue interface{ Timeout() bool }
		if errors.As(e.Err, &ue) && ue.Timeout() {
			s += ": timed out"
		} else if errors.Is(e.Err, context.DeadlineExceeded) {
			s += ": deadline exceeded"
		} else if errors.Is(e.Err, context.Canceled) {
			s += ": canceled"
		} else {
			s += ": no answer from the table endpoint"
		}
	}
	return s
}

func (e *UploadError) Unwrap() error { return e.Err }

func uploadErr(op, table string, err error) error {
	ue := &UploadError{Op: op, Table: table, Err: err}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		ue.Status, ue.Code = re.StatusCode, re.ErrorCode
	}
	return ue
}

// EnsureTable creates the table unless this sink already did; a 409 (the
// table exists) counts as success.
func (s *TableSink) EnsureTable(ctx context.Context, table string) error {
	s.mu.Lock()
	done := s.created[table]
	s.mu.Unlock()
	if done {
		return nil
	}
	_, err := s.svc.CreateTable(ctx, table, nil)
	if err != nil {
		var re *azcore.ResponseError
		if !(errors.As(err, &re) && re.StatusCode == http.StatusConflict) {
			return uploadErr("create table", table, err)
		}
	}
	s.mu.Lock()
	s.created[table] = true
	s.mu.Unlock()
	return nil
}

// Upload writes one batch: into the table named for the batch's period at
// the sink's clock, as transactions of at most MaxBatchEntities upserts
// (one transaction for a VM's window: 8 entities). It returns the table.
func (s *TableSink) Upload(ctx context.Context, b Batch) (string, error) {
	table, err := TableName(b.Period, s.now())
	if err != nil {
		return "", err
	}
	if len(b.Entities) == 0 {
		return table, nil
	}
	pk := b.Entities[0].PartitionKey
	for i, e := range b.Entities {
		if e.PartitionKey != pk {
			return "", fmt.Errorf("metrics: batch for %s: entity %d has partition key %q, entity 0 %q (a transaction holds one partition)", b.VM, i, e.PartitionKey, pk)
		}
	}
	if err := s.EnsureTable(ctx, table); err != nil {
		return table, err
	}
	client := s.svc.NewClient(table)
	for start := 0; start < len(b.Entities); start += MaxBatchEntities {
		end := min(start+MaxBatchEntities, len(b.Entities))
		actions := make([]aztables.TransactionAction, 0, end-start)
		for _, e := range b.Entities[start:end] {
			js, err := json.Marshal(e)
			if err != nil {
				return table, fmt.Errorf("metrics: batch for %s: %w", b.VM, err)
			}
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: js})
		}
		if _, err := client.SubmitTransaction(ctx, actions, nil); err != nil {
			if errors.Is(err, context.Canceled) {
				return table, err
			}
			return table, uploadErr("batch", table, err)
		}
	}
	return table, nil
}

// Client returns a table client sharing the sink's endpoint and SAS, for
// reading entities back.
func (s *TableSink) Client(table string) *aztables.Client { return s.svc.NewClient(table) }

// Uploader moves batches from a Queue to a TableSink in order: a batch is
// removed from the queue only after its transaction succeeded, and a
// failure stops the round so later windows never overtake earlier ones.
type Uploader struct {
	Queue *Queue
	Sink  *TableSink
	// OnError, when set, sees every failed round's error (for logs and
	// metrics).
	OnError func(error)
	// Workers is how many batches (of different VMs) are uploaded at once
	// (default 1: strictly in queue order).
	Workers int

	mu       sync.Mutex
	uploaded uint64
	entities uint64
}

// Enqueue stores a VM's closed window as a batch.
func (u *Uploader) Enqueue(vm string, id Identity, w Window) error {
	es, err := Entities(w, id)
	if err != nil {
		return err
	}
	return u.Queue.Push(Batch{VM: vm, WindowStart: w.Start, Period: w.Period, Entities: es})
}

// EnqueueAll stores the closed windows of many VMs (one round) with one
// durable write for the set (Queue.PushAll).
func (u *Uploader) EnqueueAll(vms []string, ids []Identity, ws []Window) error {
	if len(vms) != len(ids) || len(vms) != len(ws) {
		return fmt.Errorf("metrics: EnqueueAll: %d VMs, %d identities, %d windows", len(vms), len(ids), len(ws))
	}
	bs := make([]Batch, len(vms))
	for i := range vms {
		es, err := Entities(ws[i], ids[i])
		if err != nil {
			return fmt.Errorf("metrics: VM %s: %w", vms[i], err)
		}
		bs[i] = Batch{VM: vms[i], WindowStart: ws[i].Start, Period: ws[i].Period, Entities: es}
	}
	return u.Queue.PushAll(bs)
}

// Drain uploads queued batches, oldest first, until the queue is empty or
// an upload fails (that batch stays queued and the error is returned). A
// batch file that cannot be read back is removed and reported.
//
// With Workers > 1, up to Workers of the oldest batches are uploaded at
// once, but never two of the same VM: a VM's windows still reach the table
// in order, and after a failure the round stops, so no window overtakes an
// earlier one of its VM.
func (u *Uploader) Drain(ctx context.Context) (int, error) {
	workers := max(u.Workers, 1)
	n := 0
	for {
		items := u.Queue.PeekN(workers)
		if len(items) == 0 {
			return n, nil
		}
		// The head group: distinct VMs, readable files.
		seen := map[string]bool{}
		var group []Queued
		for _, it := range items {
			if it.Err != nil {
				if len(group) == 0 {
					_ = u.Queue.Remove(it.Seq)
					return n, it.Err
				}
				break
			}
			if seen[it.Batch.VM] {
				break
			}
			seen[it.Batch.VM] = true
			group = append(group, it)
		}
		errs := make([]error, len(group))
		if len(group) == 1 {
			_, errs[0] = u.Sink.Upload(ctx, group[0].Batch)
		} else {
			var wg sync.WaitGroup
			for i := range group {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					_, errs[i] = u.Sink.Upload(ctx, group[i].Batch)
				}(i)
			}
			wg.Wait()
		}
		var first error
		for i, it := range group {
			if errs[i] != nil {
				if first == nil {
					first = errs[i]
				}
				continue
			}
			if err := u.Queue.Remove(it.Seq); err != nil && first == nil {
				first = err
			}
			n++
			u.mu.Lock()
			u.uploaded++
			u.entities += uint64(len(it.Batch.Entities))
			u.mu.Unlock()
		}
		if first != nil {
			if u.OnError != nil {
				u.OnError(first)
			}
			return n, first
		}
	}
}

// Uploaded returns the batches and entities uploaded so far.
func (u *Uploader) Uploaded() (batches, entities uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.uploaded, u.entities
}

// Run drains the queue every interval until ctx ends; after a failure it
// waits twice as long (up to 5 minutes) before the next try.
func (u *Uploader) Run(ctx context.Context, interval time.Duration) {
	wait := interval
	for {
		if _, err := u.Drain(ctx); err != nil {
			wait = min(2*wait, 5*time.Minute)
		} else {
			wait = interval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
