//go:build !unix

package api

import "time"

// cpuTime is not measured here; the benchmark's cpu-µs/earn reads 0.
func cpuTime() time.Duration { return 0 }
