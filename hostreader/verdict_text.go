package hostreader

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/region"
)

// String returns the verdict on one line, e.g.
// "alive: last tick 1.2s ago (echo), ticks 42, boots 1, period 1s", safe
// to print: guest strings are escaped (EscapeLine). Line is the same
// line with the guest's text raw.
func (v Verdict) String() string { return EscapeLine(v.Line()) }

// Line returns the verdict on one line like String, with guest strings
// (the panic evidence) as they are: for a library value that a printer
// escapes once.
func (v Verdict) Line() string {
	var b strings.Builder
	b.WriteString(v.State.String())
	b.WriteString(": ")
	switch v.State {
	case StateCorrupt:
		if v.Fault {
			b.WriteString(v.Reason)
			break
		}
		fmt.Fprintf(&b, "%s (%s at offset %#x is %#x)", v.Reason, v.Field, v.FieldOffset, v.fieldValue())
	case StateAbsent, StateTorn:
		b.WriteString(v.Reason)
		if v.State == StateTorn {
			fmt.Fprintf(&b, " (seq %#x after %d attempts)", v.Snapshot.Seq, v.Snapshot.Attempts)
		}
	default:
		b.WriteString(v.Reason)
		if v.LastTickSource != TickUnknown {
			fmt.Fprintf(&b, "; last tick %s ago (%s)", v.Age.Round(time.Millisecond), v.LastTickSource)
		}
		fmt.Fprintf(&b, "; ticks %d, boots %d, period %s", v.Snapshot.Ticks, v.Snapshot.Boots, v.Period)
		if n := v.StaleSlots(); n > 0 {
			fmt.Fprintf(&b, "; %d stale app slot(s)", n)
		}
	}
	if v.HasPanic {
		fmt.Fprintf(&b, "; panic from %s at %s: %s", v.Panic.Source,
			v.Panic.At.UTC().Format(time.RFC3339), v.Panic.Detail)
	}
	return b.String()
}

// fieldValue is the value of the header word a corrupt verdict is about.
func (v *Verdict) fieldValue() uint32 {
	f, _ := region.FieldAt(int(v.FieldOffset))
	w, _ := v.Snapshot.Word(f)
	return w
}

// WriteText writes the verdict and all its evidence as human-readable
// lines (what `diagread REGIONFILE` prints). Guest strings are escaped.
func (v Verdict) WriteText(w io.Writer) error {
	s := &v.Snapshot
	var b strings.Builder
	fmt.Fprintf(&b, "verdict:     %s\n", v.State)
	fmt.Fprintf(&b, "reason:      %s\n", v.Reason)
	if v.State == StateCorrupt && !v.Fault {
		fmt.Fprintf(&b, "field:       %s at offset %#x = %#x\n", v.Field, v.FieldOffset, v.fieldValue())
	}
	fmt.Fprintf(&b, "read at:     %s (%d attempt(s), seq %d)\n", v.At.UTC().Format(time.RFC3339Nano), s.Attempts, s.Seq)
	fmt.Fprintf(&b, "header:      magic %#08x version %d header_size %d region_size %d (source %d bytes)\n",
		s.Magic, s.Version, s.HeaderSize, s.RegionSize, s.Avail)
	if v.LastTickSource != TickUnknown {
		fmt.Fprintf(&b, "last tick:   %s (%s ago, from %s)\n", v.LastTick.UTC().Format(time.RFC3339Nano), v.Age.Round(time.Millisecond), v.LastTickSource)
	} else {
		b.WriteString("last tick:   unknown\n")
	}
	if !v.HostStamp.IsZero() {
		fmt.Fprintf(&b, "host stamp:  %s\n", v.HostStamp.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(&b, "ticks:       %d\nboots:       %d\nperiod:      %d ds (%s used)\ntimer_lo:    %d\n",
		s.Ticks, s.Boots, s.Period, v.Period, s.TimerLo)
	fmt.Fprintf(&b, "osi:         %s\nrev:         %d\n", strings.Join(OSINames(s.OSI), ", "), s.Rev)
	fmt.Fprintf(&b, "mailbox:     cmd %d arg %d seq %d / ack %d result %d value %d\n",
		s.MbxCmd, s.MbxArg, s.MbxSeq, s.MbxAck, s.MbxResult, s.MbxValue)
	for i, sl := range v.Slots {
		if sl.State == SlotUnused {
			continue
		}
		w := s.Slots[i]
		fmt.Fprintf(&b, "slot %d:      %s tag \"%s\" beat %d period %s", i, sl.State, EscapeLine(TagText(w.Tag[:])), w.Beat, sl.Period)
		if !sl.LastBeat.IsZero() {
			fmt.Fprintf(&b, " last beat %s ago", sl.Age.Round(time.Millisecond))
		}
		b.WriteByte('\n')
	}
	if v.HasPanic {
		fmt.Fprintf(&b, "panic:       %s at %s record %d: %s\n", EscapeLine(v.Panic.Source),
			v.Panic.At.UTC().Format(time.RFC3339Nano), v.Panic.RecordID, EscapeLine(v.Panic.Detail))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// OSINames returns the _OSI strings whose bits are set in an OSI word
// ("none" if the valid bit is clear). Unknown bits are named "bitN".
func OSINames(osi uint32) []string {
	if osi&region.OSIValid == 0 {
		return []string{"none"}
	}
	var out []string
	for i := 0; i < 31; i++ {
		if osi&(1<<i) == 0 {
			continue
		}
		if i < len(region.OSIStrings) {
			out = append(out, region.OSIStrings[i])
		} else {
			out = append(out, fmt.Sprintf("bit%d", i))
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// The JSON form of a Verdict; field names are documented in docs/cli.md
// and are stable.
type verdictJSON struct {
	State          State       `json:"state"`
	Reason         string      `json:"reason"`
	Field          string      `json:"field,omitempty"`
	FieldOffset    *uint32     `json:"field_offset,omitempty"`
	Fault          bool        `json:"fault,omitempty"`
	At             time.Time   `json:"at"`
	Ticks          uint32      `json:"ticks"`
	Boots          uint32      `json:"boots"`
	PeriodDs       uint32      `json:"period_ds"`
	PeriodMs       int64       `json:"period_ms"`
	TimerLo        uint32      `json:"timer_lo"`
	LastTick       *time.Time  `json:"last_tick,omitempty"`
	LastTickSource string      `json:"last_tick_source"`
	AgeMs          *int64      `json:"age_ms,omitempty"`
	HostStamp      *time.Time  `json:"host_stamp,omitempty"`
	EchoMs         uint64      `json:"echo_ms"`
	EchoImpl       bool        `json:"echo_implausible,omitempty"`
	Header         headerJSON  `json:"header"`
	Seq            uint32      `json:"seq"`
	Attempts       int         `json:"attempts"`
	Torn           bool        `json:"torn"`
	OSI            osiJSON     `json:"osi"`
	Rev            uint32      `json:"rev"`
	Mailbox        mailboxJSON `json:"mailbox"`
	Slots          []slotJSON  `json:"slots"`
	Panic          *panicJSON  `json:"panic,omitempty"`
}

type headerJSON struct {
	Magic      uint32 `json:"magic"`
	Version    uint32 `json:"version"`
	HeaderSize uint32 `json:"header_size"`
	RegionSize uint32 `json:"region_size"`
	Available  int64  `json:"available"`
}

type osiJSON struct {
	Raw   uint32   `json:"raw"`
	Names []string `json:"names"`
}

type mailboxJSON struct {
	Cmd    uint32 `json:"cmd"`
	Arg    uint32 `json:"arg"`
	Seq    uint32 `json:"seq"`
	Ack    uint32 `json:"ack"`
	Result uint32 `json:"result"`
	Value  uint32 `json:"value"`
}

type slotJSON struct {
	Index    int       `json:"index"`
	State    SlotState `json:"state"`
	Tag      string    `json:"tag"`
	Beat     uint32    `json:"beat"`
	PeriodMs uint32    `json:"period_ms"`
	AgeMs    *int64    `json:"age_ms,omitempty"`
}

type panicJSON struct {
	Source   string    `json:"source"`
	At       time.Time `json:"at"`
	Detail   string    `json:"detail"`
	RecordID uint64    `json:"record_id,omitempty"`
}

// MarshalJSON encodes the verdict in the stable form documented in
// docs/cli.md. The panic detail is the guest's text as it is (JSON
// escapes it; invalid UTF-8 becomes U+FFFD), and so are slot tags
// (TagText).
func (v Verdict) MarshalJSON() ([]byte, error) {
	s := &v.Snapshot
	j := verdictJSON{
		State: v.State, Reason: v.Reason, Field: v.Field, Fault: v.Fault,
		At: v.At.UTC(), Ticks: s.Ticks, Boots: s.Boots, PeriodDs: s.Period, PeriodMs: v.Period.Milliseconds(),
		TimerLo: s.TimerLo, LastTickSource: v.LastTickSource.String(),
		EchoMs: region.Join(s.EchoLo, s.EchoHi), EchoImpl: v.EchoImplausible,
		Header: headerJSON{s.Magic, s.Version, s.HeaderSize, s.RegionSize, s.Avail},
		Seq:    s.Seq, Attempts: s.Attempts, Torn: s.Torn,
		OSI:     osiJSON{Raw: s.OSI, Names: OSINames(s.OSI)},
		Rev:     s.Rev,
		Mailbox: mailboxJSON{s.MbxCmd, s.MbxArg, s.MbxSeq, s.MbxAck, s.MbxResult, s.MbxValue},
		Slots:   []slotJSON{},
	}
	if v.State == StateCorrupt && v.Field != "" {
		off := v.FieldOffset
		j.FieldOffset = &off
	}
	if v.LastTickSource != TickUnknown {
		lt := v.LastTick.UTC()
		age := v.Age.Milliseconds()
		j.LastTick, j.AgeMs = &lt, &age
	}
	if !v.HostStamp.IsZero() {
		hs := v.HostStamp.UTC()
		j.HostStamp = &hs
	}
	for i, sl := range v.Slots {
		if sl.State == SlotUnused {
			continue
		}
		w := s.Slots[i]
		sj := slotJSON{Index: i, State: sl.State, Tag: TagText(w.Tag[:]), Beat: w.Beat, PeriodMs: w.PeriodMs}
		if !sl.LastBeat.IsZero() {
			a := sl.Age.Milliseconds()
			sj.AgeMs = &a
		}
		j.Slots = append(j.Slots, sj)
	}
	if v.HasPanic {
		j.Panic = &panicJSON{v.Panic.Source, v.Panic.At.UTC(), v.Panic.Detail, v.Panic.RecordID}
	}
	return json.Marshal(j)
}
