package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Event is one change worth telling: an alert that started firing, is
// still firing (a reminder after the repeat interval), or resolved.
type Event struct {
	Name      string
	Severity  string
	Status    string // firing or resolved
	Summary   string
	Value     Value
	StartedAt time.Time // when it fired
	EndedAt   time.Time // when it resolved; zero while firing
	Reminder  bool
	seq       uint64 // evaluation order: a later event of an alert replaces an earlier one
}

// merge folds newer events into older ones: one event per alert, the latest.
func merge(older, newer []Event) []Event {
	if len(older) == 0 {
		return newer
	}
	by := make(map[string]Event, len(older)+len(newer))
	for _, ev := range older {
		by[ev.Name] = ev
	}
	for _, ev := range newer {
		if prev, ok := by[ev.Name]; !ok || ev.seq >= prev.seq {
			by[ev.Name] = ev
		}
	}
	out := make([]Event, 0, len(by))
	for _, ev := range by {
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// jsonMessage is the generic webhook format.
type jsonMessage struct {
	Status   string      `json:"status"` // firing when any alert in it fires, else resolved
	Instance string      `json:"instance,omitempty"`
	Alerts   []jsonAlert `json:"alerts"`
}

type jsonAlert struct {
	Name      string     `json:"name"`
	Severity  string     `json:"severity"`
	Status    string     `json:"status"`
	Summary   string     `json:"summary"`
	Value     Value      `json:"value"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"`
	Reminder  bool       `json:"reminder,omitempty"`
}

// payload renders events in the webhook's format.
func payload(format, instance string, evs []Event) ([]byte, error) {
	firing, resolved := 0, 0
	for _, ev := range evs {
		if ev.Status == StateFiring {
			firing++
		} else {
			resolved++
		}
	}
	if format == "slack" {
		var sb strings.Builder
		head := []string{}
		if firing > 0 {
			head = append(head, fmt.Sprintf("%d firing", firing))
		}
		if resolved > 0 {
			head = append(head, fmt.Sprintf("%d resolved", resolved))
		}
		fmt.Fprintf(&sb, "*pointd* %s: %s", instance, strings.Join(head, ", "))
		for _, ev := range evs {
			const clock = "15:04:05 MST"
			switch {
			case ev.Status == StateResolved:
				fmt.Fprintf(&sb, "\n:large_green_circle: RESOLVED [%s] *%s*: %s (fired %s, resolved %s)",
					ev.Severity, ev.Name, ev.Summary, ev.StartedAt.UTC().Format(clock), ev.EndedAt.UTC().Format(clock))
			case ev.Reminder:
				fmt.Fprintf(&sb, "\n:repeat: STILL FIRING [%s] *%s*: %s (since %s)",
					ev.Severity, ev.Name, ev.Summary, ev.StartedAt.UTC().Format(clock))
			default:
				fmt.Fprintf(&sb, "\n:red_circle: FIRING [%s] *%s*: %s (since %s)",
					ev.Severity, ev.Name, ev.Summary, ev.StartedAt.UTC().Format(clock))
			}
		}
		return json.Marshal(map[string]string{"text": sb.String()})
	}
	m := jsonMessage{Status: StateResolved, Instance: instance, Alerts: make([]jsonAlert, len(evs))}
	if firing > 0 {
		m.Status = StateFiring
	}
	for i, ev := range evs {
		a := jsonAlert{Name: ev.Name, Severity: ev.Severity, Status: ev.Status, Summary: ev.Summary,
			Value: ev.Value, StartedAt: ev.StartedAt.UTC(), Reminder: ev.Reminder}
		if !ev.EndedAt.IsZero() {
			t := ev.EndedAt.UTC()
			a.EndedAt = &t
		}
		m.Alerts[i] = a
	}
	return json.Marshal(m)
}

// sender delivers one webhook's messages on its own goroutine: a bounded
// queue (the oldest message is dropped when full), at most MaxPerMinute
// messages a minute (what waits is merged into the next message), and
// retries with exponential backoff (newer events merged in meanwhile).
type sender struct {
	e    *Engine
	hook Webhook

	mu    sync.Mutex
	queue [][]Event
	wake  chan struct{}
	sent  []time.Time // deliveries in the last minute
}

func newSender(e *Engine, w Webhook) *sender {
	return &sender{e: e, hook: w, wake: make(chan struct{}, 1)}
}

// enqueue never blocks.
func (s *sender) enqueue(evs []Event) {
	s.mu.Lock()
	if len(s.queue) >= s.hook.QueueSize {
		s.queue = s.queue[1:]
		s.e.dropped.WithLabelValues(s.hook.Name).Inc()
	}
	s.queue = append(s.queue, evs)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take merges everything queued into evs.
func (s *sender) take(evs []Event) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.queue {
		evs = merge(evs, q)
	}
	s.queue = nil
	return evs
}

func (s *sender) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		evs := s.take(nil)
		if len(evs) == 0 {
			continue
		}
		backoff := s.e.cfg.RetryMin
		for {
			for {
				wait := s.rateWait()
				if wait <= 0 {
					break
				}
				if !s.sleep(ctx, wait) {
					return
				}
				evs = s.take(evs)
			}
			err := s.post(ctx, evs)
			if err == nil {
				s.e.notified.WithLabelValues(s.hook.Name, "sent").Inc()
				s.sent = append(s.sent, s.e.clock.Now())
				break
			}
			s.e.notified.WithLabelValues(s.hook.Name, "failed").Inc()
			s.e.log.Warn("alert: webhook delivery failed; will retry", "webhook", s.hook.Name,
				"alerts", len(evs), "retry_in", backoff.String(), "err", err)
			if !s.sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, s.e.cfg.RetryMax)
			evs = s.take(evs)
		}
	}
}

// rateWait is how long until one more message fits in the minute.
func (s *sender) rateWait() time.Duration {
	now := s.e.clock.Now()
	keep := s.sent[:0]
	for _, t := range s.sent {
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	s.sent = keep
	if len(s.sent) < s.hook.MaxPerMinute {
		return 0
	}
	return s.sent[0].Add(time.Minute).Sub(now)
}

func (s *sender) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.e.clock.After(d):
		return true
	}
}

func (s *sender) post(ctx context.Context, evs []Event) error {
	body, err := payload(s.hook.Format, s.e.cfg.Instance, evs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.hook.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pointd-alert")
	for k, v := range s.hook.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.e.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}
