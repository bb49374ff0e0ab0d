package metrics

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Counter names, exactly as LAD's builtin memory class names them
// (Diagnostic/Providers/Builtin.py: class "memory").
const (
	CounterAvailableMemory        = "/builtin/memory/availablememory"
	CounterPercentAvailableMemory = "/builtin/memory/percentavailablememory"
	CounterUsedMemory             = "/builtin/memory/usedmemory"
	CounterPercentUsedMemory      = "/builtin/memory/percentusedmemory"
)

// Counters lists the four memory counters in the order Window keeps them.
var Counters = [NumCounters]string{CounterAvailableMemory, CounterPercentAvailableMemory, CounterUsedMemory, CounterPercentUsedMemory}

// NumCounters is the number of memory counters per VM.
const NumCounters = 4

// Indexes into Counters and Window.Aggregates.
const (
	IdxAvailable = iota
	IdxPercentAvailable
	IdxUsed
	IdxPercentUsed
)

// .NET DateTime facts used by LAD (mdsdutil/MdsTime.hh).
const (
	// MaxDateTimeTicks is DateTime.MaxValue.Ticks: 9999-12-31T23:59:59.9999999Z.
	MaxDateTimeTicks uint64 = 3155378975999999999
	// unixEpochTicks is 1970-01-01T00:00:00Z in .NET ticks (100 ns since 0001-01-01).
	unixEpochTicks uint64 = 621355968000000000
	// fileTimeEpochDiff is the seconds from 1601-01-01 (Windows FILETIME
	// epoch) to 1970-01-01.
	fileTimeEpochDiff int64 = 11644473600
)

// DateTimeTicks returns t as .NET DateTime ticks (100 ns units since
// 0001-01-01 UTC), as MdsTime::to_DateTime computes them. It works from
// whole seconds (t.UnixNano overflows after 2262).
func DateTimeTicks(t time.Time) uint64 {
	return uint64(int64(unixEpochTicks) + t.Unix()*10_000_000 + int64(t.Nanosecond()/100))
}

// DescendingTicks is LAD's 19-digit reversed time of a window start:
// MaxDateTimeTicks - ticks(start), zero-filled to 19 digits
// (LADQuery::Done: MdsdUtil::ZeroFill(MaxDateTimeTicks - _startOfSample.to_DateTime(), 19)).
func DescendingTicks(start time.Time) string {
	s := strconv.FormatUint(MaxDateTimeTicks-DateTimeTicks(start), 10)
	if len(s) < 19 {
		s = strings.Repeat("0", 19-len(s)) + s
	}
	return s
}

// TenDayStart returns the start of the 10-day period that holds t: the
// days are counted from 1601-01-01 UTC, the Windows FILETIME epoch
// (MdsTime::RoundTenDay).
func TenDayStart(t time.Time) time.Time {
	secs := t.Unix() + fileTimeEpochDiff
	const tenDays = 10 * 24 * 3600
	secs -= ((secs % tenDays) + tenDays) % tenDays
	return time.Unix(secs-fileTimeEpochDiff, 0).UTC()
}

// ISO8601Period formats a whole-second duration the way LAD's table names
// carry the transfer period: "PT1M", "PT1H", "PT1H30M", "PT90S" is written
// "PT1M30S". It returns an error for durations that are not positive
// whole seconds.
func ISO8601Period(d time.Duration) (string, error) {
	if d <= 0 || d%time.Second != 0 {
		return "", fmt.Errorf("metrics: period %s is not a positive whole number of seconds", d)
	}
	secs := int64(d / time.Second)
	var b strings.Builder
	b.WriteString("PT")
	if h := secs / 3600; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
	}
	if m := secs % 3600 / 60; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
	}
	if s := secs % 60; s > 0 {
		fmt.Fprintf(&b, "%dS", s)
	}
	return b.String(), nil
}

// TableName returns LAD's metrics table name for a transfer period at time
// now: "WADMetrics" + ISO 8601 period + "P10DV2S" + yyyymmdd of the 10-day
// period holding now (lad_config_all.py _wad_table_name;
// MdsEntityName::Name adds MdsdUtil::GetTenDaySuffix(), computed from
// MdsTime::Now() when the batch is written). Example: PT1M on 2024-05-12 →
// "WADMetricsPT1MP10DV2S20240503".
func TableName(period time.Duration, now time.Time) (string, error) {
	p, err := ISO8601Period(period)
	if err != nil {
		return "", err
	}
	return "WADMetrics" + p + "P10DV2S" + TenDayStart(now).Format("20060102"), nil
}

// EscapePartitionKey escapes a resource id the way LAD builds the LADQuery
// partitionKey (Utils/misc_helpers.py escape_nonalphanumerics): every
// character that is not alphanumeric (Python's str.isalnum, Unicode aware)
// becomes ":" and its code point as at least four upper-case hex digits.
// Example: "/subscriptions/x" → ":002Fsubscriptions:002Fx".
func EscapePartitionKey(resourceID string) string {
	var b strings.Builder
	b.Grow(len(resourceID) * 2)
	for _, r := range resourceID {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsNumber(r) {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, ":%04X", r)
	}
	return b.String()
}

// maxEncodedMetric is LADQuery's limit for an encoded counter name in a
// row key (EncodeAndHash(name, 256)).
const maxEncodedMetric = 256

// EncodeRowKeyMetric encodes a counter name for a row key as
// LADQuery::EncodeAndHash does: ASCII letters and digits stay, every other
// byte becomes ":" and four upper-case hex digits. LAD replaces the tail of
// names longer than 256 encoded characters with a MurmurHash64; the
// counters here are far shorter, and a longer name is refused.
func EncodeRowKeyMetric(name string) (string, error) {
	var b strings.Builder
	b.Grow(len(name) * 2)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		if c >= 0x80 {
			// LAD formats (unsigned short)(char)c: a signed char
			// sign-extends, so a byte >= 0x80 becomes FFxx.
			fmt.Fprintf(&b, ":FF%02X", c)
			continue
		}
		fmt.Fprintf(&b, ":%04X", c)
	}
	if b.Len() > maxEncodedMetric {
		return "", fmt.Errorf("metrics: counter name %q encodes to %d characters, above LAD's %d (LAD would hash it; not supported)", name, b.Len(), maxEncodedMetric)
	}
	return b.String(), nil
}

// RowKeys returns LAD's two row keys for one aggregate: the ticks-first
// key "<19-digit descending ticks>__<metric>" and its twin
// "<metric>__<19-digit descending ticks>", each followed by
// "__<instanceID>" when instanceID is set (LAD sets it for VM scale sets).
// metric is the encoded counter name (EncodeRowKeyMetric).
func RowKeys(encodedMetric string, windowStart time.Time, instanceID string) (ticksFirst, metricFirst string) {
	ticks := DescendingTicks(windowStart)
	ticksFirst = ticks + "__" + encodedMetric
	metricFirst = encodedMetric + "__" + ticks
	if instanceID != "" {
		ticksFirst += "__" + instanceID
		metricFirst += "__" + instanceID
	}
	return ticksFirst, metricFirst
}
