package collector

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/acpidiag/acpidiag/monitor"
)

// svgChart is an inline SVG drawing the templates render (every string
// goes through html/template).
type svgChart struct {
	W, H     int
	Rects    []svgRect
	Lines    []svgLine
	Circles  []svgCircle
	Texts    []svgText
	Polyline string
	Empty    string
}

type svgRect struct {
	X, Y, W, H float64
	Fill       string
	Title      string
}

type svgLine struct {
	X1, Y1, X2, Y2 float64
	Stroke         string
}

type svgCircle struct {
	X, Y, R float64
	Fill    string
	Title   string
}

type svgText struct {
	X, Y   float64
	Text   string
	Anchor string
}

// stateColor colours a verdict or state; unknown states are grey.
func stateColor(s string) string {
	switch s {
	case "alive", "running", "reconnected", "pass", "ok":
		return "#2e9d57"
	case "stale", "waiting", "torn":
		return "#e0a010"
	case "panicked", "corrupt", "fail":
		return "#d03030"
	case "rebooted":
		return "#3070d0"
	case "disconnected", "absent", "exited", "shutdown":
		return "#707070"
	}
	return "#a0a0a0"
}

// sparkline draws incident times on a shared axis [t0, t1].
func sparkline(ts []time.Time, t0, t1 time.Time) svgChart {
	c := svgChart{W: 240, H: 24}
	c.Lines = append(c.Lines, svgLine{0, 12, 240, 12, "#ccc"})
	span := t1.Sub(t0)
	for _, t := range ts {
		x := 120.0
		if span > 0 {
			x = 4 + 232*float64(t.Sub(t0))/float64(span)
		}
		c.Circles = append(c.Circles, svgCircle{X: x, Y: 12, R: 4, Fill: "#d03030", Title: t.UTC().Format(time.RFC3339)})
	}
	return c
}

// window is the time span an incident's charts show: its timeline and
// probe history up to the manifest's end.
func window(m *monitor.Manifest) (time.Time, time.Time) {
	t0, t1 := m.Created, m.Finished
	if t1.IsZero() || t1.Before(t0) {
		t1 = t0
	}
	for _, e := range m.Timeline {
		if e.Time.Before(t0) {
			t0 = e.Time
		}
		if e.Time.After(t1) {
			t1 = e.Time
		}
	}
	for _, r := range m.ProbeHistory {
		if !r.Start.IsZero() && r.Start.Before(t0) {
			t0 = r.Start
		}
	}
	if !t1.After(t0) {
		t1 = t0.Add(time.Second)
	}
	return t0, t1
}

const chartLeft, chartW = 90.0, 620.0

func xOf(t, t0, t1 time.Time) float64 {
	return chartLeft + chartW*float64(t.Sub(t0))/float64(t1.Sub(t0))
}

func axis(c *svgChart, t0, t1 time.Time, y float64) {
	c.Lines = append(c.Lines, svgLine{chartLeft, y, chartLeft + chartW, y, "#888"})
	for i := 0; i <= 4; i++ {
		t := t0.Add(time.Duration(int64(t1.Sub(t0)) * int64(i) / 4))
		x := xOf(t, t0, t1)
		c.Lines = append(c.Lines, svgLine{x, y, x, y + 4, "#888"})
		anchor := "middle"
		if i == 0 {
			anchor = "start"
		} else if i == 4 {
			anchor = "end"
		}
		c.Texts = append(c.Texts, svgText{X: x, Y: y + 16, Text: t.UTC().Format("15:04:05.0"), Anchor: anchor})
	}
}

// timelineChart draws the verdict timeline: one lane per source (region,
// qmp, erst, process, monitor) with its states as coloured spans, the
// probe results as dots and the incident as a red line.
func timelineChart(m *monitor.Manifest) svgChart {
	t0, t1 := window(m)
	lanes := map[string][]monitor.TimelineEntry{}
	var names []string
	for _, e := range m.Timeline {
		if _, ok := lanes[e.Source]; !ok {
			names = append(names, e.Source)
		}
		lanes[e.Source] = append(lanes[e.Source], e)
	}
	sort.Strings(names)
	names = append(names, "probe")
	c := svgChart{W: 720, H: 40 + 26*len(names)}
	for i, n := range names {
		y := 10 + 26*float64(i)
		c.Texts = append(c.Texts, svgText{X: chartLeft - 6, Y: y + 14, Text: n, Anchor: "end"})
		c.Rects = append(c.Rects, svgRect{X: chartLeft, Y: y, W: chartW, H: 18, Fill: "#f2f2f2"})
		if n == "probe" {
			for _, r := range m.ProbeHistory {
				st, title := "pass", "ok "+r.Detail
				if !r.OK {
					st, title = "fail", "failed: "+r.Error
				}
				c.Circles = append(c.Circles, svgCircle{X: xOf(r.Start, t0, t1), Y: y + 9, R: 5, Fill: stateColor(st), Title: r.Start.UTC().Format("15:04:05.000 ") + title})
			}
			continue
		}
		es := lanes[n]
		sort.SliceStable(es, func(a, b int) bool { return es[a].Time.Before(es[b].Time) })
		for j, e := range es {
			end := t1
			if j+1 < len(es) {
				end = es[j+1].Time
			}
			x := xOf(e.Time, t0, t1)
			w := xOf(end, t0, t1) - x
			if w < 2 {
				w = 2
			}
			c.Rects = append(c.Rects, svgRect{X: x, Y: y, W: w, H: 18, Fill: stateColor(e.State),
				Title: fmt.Sprintf("%s %s: %s", e.Time.UTC().Format("15:04:05.000"), e.State, e.Reason)})
			if w > 50 {
				c.Texts = append(c.Texts, svgText{X: x + 3, Y: y + 13, Text: e.State, Anchor: "start"})
			}
		}
	}
	xi := xOf(m.Created, t0, t1)
	c.Lines = append(c.Lines, svgLine{xi, 4, xi, float64(c.H) - 26, "#d03030"})
	axis(&c, t0, t1, float64(c.H)-26)
	return c
}

// gapChart draws the heartbeat gap over time: the time since the guest's
// last tick, 0 while the region is alive, growing from the last tick
// once it is not (the last tick from region.json when the bundle has it).
func gapChart(b *Bundle) svgChart {
	m := b.Manifest
	t0, t1 := window(m)
	c := svgChart{W: 720, H: 170}
	var reg []monitor.TimelineEntry
	for _, e := range m.Timeline {
		if e.Source == "region" {
			reg = append(reg, e)
		}
	}
	sort.SliceStable(reg, func(a, b int) bool { return reg[a].Time.Before(reg[b].Time) })
	lastTick := regionLastTick(b)
	if len(reg) == 0 && lastTick.IsZero() {
		c.Empty = "no region verdicts in this bundle"
		return c
	}
	type pt struct {
		t   time.Time
		gap time.Duration
	}
	var pts []pt
	gapAt := func(t, from time.Time) time.Duration {
		if t.Before(from) {
			return 0
		}
		return t.Sub(from)
	}
	if len(reg) == 0 {
		pts = []pt{{t0, gapAt(t0, lastTick)}, {t1, gapAt(t1, lastTick)}}
	}
	seenAlive := false
	for i, e := range reg {
		end := t1
		if i+1 < len(reg) {
			end = reg[i+1].Time
		}
		if e.State == "alive" {
			seenAlive = true
			if i+1 == len(reg) && !lastTick.IsZero() && lastTick.After(e.Time) && lastTick.Before(end) {
				// Alive until the last tick seen, then no tick since.
				pts = append(pts, pt{e.Time, 0}, pt{lastTick, 0}, pt{end, end.Sub(lastTick)})
				continue
			}
			pts = append(pts, pt{e.Time, 0}, pt{end, 0})
			continue
		}
		if !seenAlive {
			continue // never ticked yet (absent while booting): no gap to show
		}
		from := e.Time
		if i+1 == len(reg) && !lastTick.IsZero() && lastTick.Before(e.Time) {
			from = lastTick
		} else if i > 0 && reg[i-1].State == "alive" {
			from = e.Time // lower bound: the transition
		}
		pts = append(pts, pt{e.Time, gapAt(e.Time, from)}, pt{end, gapAt(end, from)})
	}
	var max time.Duration
	for _, p := range pts {
		if p.gap > max {
			max = p.gap
		}
	}
	if max < time.Second {
		max = time.Second
	}
	top, bottom := 12.0, 130.0
	yOf := func(d time.Duration) float64 { return bottom - (bottom-top)*float64(d)/float64(max) }
	var sb strings.Builder
	for _, p := range pts {
		t := p.t
		if t.Before(t0) {
			t = t0
		}
		fmt.Fprintf(&sb, "%.1f,%.1f ", xOf(t, t0, t1), yOf(p.gap))
	}
	c.Polyline = strings.TrimSpace(sb.String())
	c.Lines = append(c.Lines, svgLine{chartLeft, top, chartLeft, bottom, "#888"})
	c.Texts = append(c.Texts, svgText{X: chartLeft - 6, Y: top + 4, Text: max.Round(100 * time.Millisecond).String(), Anchor: "end"},
		svgText{X: chartLeft - 6, Y: bottom, Text: "0", Anchor: "end"})
	xi := xOf(m.Created, t0, t1)
	c.Lines = append(c.Lines, svgLine{xi, top, xi, bottom, "#d03030"})
	if !lastTick.IsZero() && !lastTick.Before(t0) && !lastTick.After(t1) {
		x := xOf(lastTick, t0, t1)
		c.Lines = append(c.Lines, svgLine{x, top, x, bottom, "#3070d0"})
		c.Texts = append(c.Texts, svgText{X: x + 3, Y: top + 10, Text: "last tick", Anchor: "start"})
	}
	axis(&c, t0, t1, bottom)
	return c
}

// regionLastTick reads the last tick of region.json (the monitor's
// verdict, else the file's).
func regionLastTick(b *Bundle) time.Time {
	data, err := os.ReadFile(filepath.Join(b.Dir, "region.json"))
	if err != nil {
		return time.Time{}
	}
	type v struct {
		LastTick *time.Time `json:"last_tick"`
	}
	var r struct {
		Monitor *v `json:"monitor"`
		File    *v `json:"file"`
	}
	if json.Unmarshal(data, &r) != nil {
		return time.Time{}
	}
	for _, x := range []*v{r.Monitor, r.File} {
		if x != nil && x.LastTick != nil {
			return *x.LastTick
		}
	}
	return time.Time{}
}
