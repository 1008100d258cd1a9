package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuSample is where the machine's CPU time had gone at one moment: the
// machine's (Linux /proc/stat), this generator's with its prober, and the
// server's (its process_cpu_seconds_total). The overload report shows the
// shares between two samples: on a machine shared by the generator and the
// server, whether the CPU ran out, and who took it.
type cpuSample struct {
	at           time.Time
	busy, total  float64 // the machine's jiffies; 0 when unknown
	self         time.Duration
	server       float64 // seconds
	haveMachine  bool
	haveSelfTime bool
}

func takeCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	s.self, s.haveSelfTime = selfCPU()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return s
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	s.haveMachine = true
	return s
}

// busyShare is the machine's busy share between s and t, "-" when unknown: the
// capacity search's "cpu" column.
func (s cpuSample) busyShare(t cpuSample) string {
	if !s.haveMachine || t.total <= s.total {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*(t.busy-s.busy)/(t.total-s.total))
}

// cores is the server's and this generator's CPU between s and t, in cores
// ("-" when unknown): the capacity search's "server" and "client" columns.
func (s cpuSample) cores(t cpuSample) (server, client string) {
	server, client = "-", "-"
	secs := t.at.Sub(s.at).Seconds()
	if t.server > 0 && secs > 0 {
		server = fmt.Sprintf("%.2f", (t.server-s.server)/secs)
	}
	if s.haveSelfTime && secs > 0 {
		client = fmt.Sprintf("%.2f", (t.self-s.self).Seconds()/secs)
	}
	return server, client
}

// report says how many cores' worth each used between s and t.
func (s cpuSample) report(t cpuSample) string {
	secs := t.at.Sub(s.at).Seconds()
	var parts []string
	if s.haveMachine && t.total > s.total {
		parts = append(parts, fmt.Sprintf("machine busy %.0f%%", 100*(t.busy-s.busy)/(t.total-s.total)))
	}
	if t.server > 0 {
		parts = append(parts, fmt.Sprintf("server %.2f cores", (t.server-s.server)/secs))
	}
	if s.haveSelfTime {
		parts = append(parts, fmt.Sprintf("generator and prober %.2f cores", (t.self-s.self).Seconds()/secs))
	}
	if len(parts) == 0 {
		return "unknown here"
	}
	return strings.Join(parts, ", ") + " (the rest: the database and everything else on the machine)"
}
