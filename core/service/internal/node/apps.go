package node

import (
	"context"
	"sync"
	"time"

	"github.com/longlink/longlink/core/store"
)

// AppCache keeps apps for a short while: login is hot, apps change rarely.
type AppCache struct {
	st store.Store
	mu sync.Mutex
	m  map[string]cachedApp
}

type cachedApp struct {
	app     store.App
	fetched time.Time
}

const appCacheTTL = 30 * time.Second

// Put caches a, fetched at now.
func (c *AppCache) Put(a store.App, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedApp{}
	}
	c.m[a.AppKey] = cachedApp{app: a, fetched: now}
}

// Get returns the app of appkey, from the cache while it is fresh.
func (c *AppCache) Get(ctx context.Context, appkey string, now time.Time) (store.App, error) {
	c.mu.Lock()
	e, ok := c.m[appkey]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < appCacheTTL {
		return e.app, nil
	}
	a, err := c.st.App(ctx, appkey)
	if err != nil {
		return store.App{}, err
	}
	c.Put(a, now)
	return a, nil
}

// App returns the app of appkey (cached briefly).
func (n *Node) App(ctx context.Context, appkey string) (store.App, error) {
	return n.Apps.Get(ctx, appkey, n.Now())
}
