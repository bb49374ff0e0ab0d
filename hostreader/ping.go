package hostreader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/acpidiag/acpidiag/region"
)

// ErrNoAnswer is returned by Ping when the guest did not answer within the
// timeout; the PingResult's Verdict says why (stale, absent, ...).
var ErrNoAnswer = errors.New("hostreader: no answer to the ping")

// PingResult is the outcome of one mailbox ping.
type PingResult struct {
	// Seq is the mailbox sequence number posted; Arg the value the guest
	// must echo.
	Seq, Arg uint32
	// Answered is set when the guest acknowledged Seq.
	Answered bool
	// Result and Value are the guest's answer (region.ResultOK and Arg for a
	// correct answer).
	Result, Value uint32
	// RoundTrip is the host time from posting to seeing the answer (a
	// reader polls, so it is late by at most one poll interval).
	RoundTrip time.Duration
	// Ticks is how far the tick count moved between posting and the answer
	// (the answer comes with a tick; more than 1 means the guest ticked
	// without answering, e.g. the first tick of a boot).
	Ticks uint32
	// Verdict is the region's verdict at the end, from every snapshot the
	// ping took: on ErrNoAnswer it says why (stale, absent, corrupt ...).
	Verdict Verdict
}

// PingPoll is how often Ping re-reads the region while it waits.
const PingPoll = 10 * time.Millisecond

// Ping posts a region.CmdPing through the mailbox of r (opened writable)
// and waits up to timeout for the guest's AML to answer it at its next
// tick. It returns ErrNoAnswer (with the verdict that explains it) when no
// answer came, an error wrapping ErrBadAnswer when the answer is not the
// echo of the ping, and ErrReadOnly, ErrClosed or a fault error when the
// region cannot be used.
func Ping(ctx context.Context, r *Region, cfg VerdictConfig, timeout time.Duration) (PingResult, error) {
	var res PingResult
	t := NewTracker(cfg)
	s0, err := r.Snapshot()
	if err != nil {
		res.Verdict = faultVerdict(s0, err)
		return res, err
	}
	t.Update(s0)
	start := time.Now()
	res.Arg = uint32(start.UnixNano()>>10) | 1 // varies per ping; never 0
	if res.Seq, err = r.Post(region.CmdPing, res.Arg); err != nil {
		return res, err
	}
	deadline := start.Add(timeout)
	tick := time.NewTicker(PingPoll)
	defer tick.Stop()
	for {
		s, err := r.Snapshot()
		if err != nil {
			res.Verdict = faultVerdict(s, err)
			return res, err
		}
		res.Verdict = t.Update(s)
		if !s.Torn && s.MbxAck == res.Seq {
			res.Answered, res.Result, res.Value = true, s.MbxResult, s.MbxValue
			res.RoundTrip = s.At.Sub(start)
			res.Ticks = s.Ticks - s0.Ticks
			if s.Boots != s0.Boots {
				res.Ticks = s.Ticks // a new boot: counted from its start
			}
			if s.MbxResult != region.ResultOK || s.MbxValue != res.Arg {
				return res, fmt.Errorf("%w: result %d value %#x, want result %d value %#x",
					ErrBadAnswer, s.MbxResult, s.MbxValue, region.ResultOK, res.Arg)
			}
			return res, nil
		}
		if !time.Now().Before(deadline) {
			return res, ErrNoAnswer
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
	}
}

// ErrBadAnswer is wrapped by Ping's error when the guest acknowledged the
// ping with something other than region.ResultOK and the echoed argument.
var ErrBadAnswer = errors.New("hostreader: wrong answer to the ping")
