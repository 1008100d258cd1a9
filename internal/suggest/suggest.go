// Package suggest finds the known name nearest to a mistyped one, for
// messages that say "did you mean …?".
package suggest

import "sort"

// Nearest returns the candidate closest to name by edit distance
// (insertions, deletions, substitutions and swaps of two neighbours), or ""
// when none is close enough to be a likely typo: at most a third of the
// longer name's letters, and never more than 3. Ties go to the first in
// sorted order, so that the answer does not depend on map order.
func Nearest(name string, candidates []string) string {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	best, bestD := "", -1
	for _, c := range sorted {
		if c == name {
			return c
		}
		d := distance(name, c)
		limit := min(3, max(1, max(len([]rune(name)), len([]rune(c)))/3))
		if d <= limit && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance of a and b.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
