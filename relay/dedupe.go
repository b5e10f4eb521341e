package relay

import "sync"

// dedupeWindow is how many sequence numbers behind the newest a numbered
// datagram may be and still be told apart from a duplicate. A datagram
// older than that is dropped: its copies took paths more than this many
// datagrams apart, and a real-time stream has no use for it any more.
const dedupeWindow = 1024

// dedupe tells the first arrival of each numbered datagram from its later
// copies (a sliding bitmap window, as IPsec's anti-replay check in RFC
// 6479). Sequence numbers are 32-bit and wrap: a number is newer than
// another when it is ahead by less than 2^31.
type dedupe struct {
	mu   sync.Mutex
	init bool
	top  uint32 // the newest number seen
	bits [dedupeWindow / 64]uint64
}

// first reports whether seq arrives for the first time (and records it);
// false for a duplicate or a number too far behind the newest.
func (d *dedupe) first(seq uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.init {
		d.init, d.top = true, seq
		d.set(seq)
		return true
	}
	ahead := seq - d.top // modulo 2^32
	switch {
	case ahead == 0:
		return false
	case ahead < 1<<31:
		// Newer: slide the window, clearing the numbers it passes.
		if ahead >= dedupeWindow {
			d.bits = [dedupeWindow / 64]uint64{}
		} else {
			for s := d.top + 1; s != seq; s++ {
				d.clear(s)
			}
		}
		d.top = seq
		d.set(seq)
		return true
	}
	if d.top-seq >= dedupeWindow {
		return false
	}
	if d.has(seq) {
		return false
	}
	d.set(seq)
	return true
}

func (d *dedupe) set(s uint32)      { d.bits[s/64%(dedupeWindow/64)] |= 1 << (s % 64) }
func (d *dedupe) clear(s uint32)    { d.bits[s/64%(dedupeWindow/64)] &^= 1 << (s % 64) }
func (d *dedupe) has(s uint32) bool { return d.bits[s/64%(dedupeWindow/64)]&(1<<(s%64)) != 0 }
