package relay

import (
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// splice copies both ways between a and b until either side ends, then
// closes both (a half-closed tunnel is not kept: Link and HTTP flows end as
// a whole). up counts bytes a→b, down b→a.
func splice(a, b io.ReadWriteCloser, up, down prometheus.Counter) {
	var wg sync.WaitGroup
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = a.Close()
			_ = b.Close()
		})
	}
	cp := func(dst io.Writer, src io.Reader, c prometheus.Counter) {
		defer wg.Done()
		defer closeBoth()
		bp := copyBufPool.Get().(*[]byte)
		defer copyBufPool.Put(bp)
		buf := *bp
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
				c.Add(float64(n))
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go cp(b, a, up)
	go cp(a, b, down)
	wg.Wait()
}
