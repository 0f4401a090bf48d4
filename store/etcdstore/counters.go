package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/proxy"
)

// Counter keys, under the store prefix P (grant ids path-escaped):
//
//	P counters/<grant>/rpm/<minute, unix seconds>  -> decimal: requests of
//	     that minute claimed by all proxies together (in allotments, by
//	     compare-and-swap); bound to a lease that ends a few minutes later
//	P counters/<grant>/tokens/<replica>            -> {"tokens":N,"expires":T}:
//	     the tokens this replica (one process) counted against the grant's
//	     budget; the grant's spend is the sum over replicas. Dropped an
//	     hour after the grant expires.
//
// Shared limits: a request against an RPM limit is admitted only with one
// unit of the grant's minute, which a replica claims from the shared
// counter in allotments of Allotment(rpm) units and hands out locally. The
// replicas together never claim more than the limit in a minute, so the
// shared rpm is never exceeded (overshoot 0 per calendar minute of the
// replicas' clocks); what a replica claimed and did not use is lost to the
// others for that minute (at most Allotment(rpm)-1 units per replica).
// Token budgets are summed from every replica's reported usage, which
// reaches the others within FlushInterval plus a watch delay: a budget may
// be overshot by the usage other replicas counted in that window, besides
// the calls in flight that one proxy already lets finish.
const countersDir = "counters/"

// rpmLeaseTTL keeps a minute's counter a while after the minute ends.
const rpmLeaseTTL = 180

// Allotment is how many units of a minute a replica claims at once for a
// grant limited to rpm requests per minute: 1/20 of the limit, between 1
// and 50.
func Allotment(rpm int64) int64 { return min(max(rpm/20, 1), 50) }

// CounterOptions tunes DB.Counters.
type CounterOptions struct {
	// Replica names this process's token counters (default host-pid-random).
	Replica string
	// FlushInterval is how often this replica's token usage is written
	// (default 1s): what the others may not yet know of.
	FlushInterval time.Duration
	// OnError hears failed flushes and watch errors (retried).
	OnError func(error)
	// Now is the clock for dropping expired records (default time.Now).
	Now func() time.Time
}

// Counters keeps the proxy's limit counters in etcd, shared by every
// replica. It implements proxy.SharedCounters.
type Counters struct {
	cli      *clientv3.Client
	prefix   string
	replica  string
	interval time.Duration
	onError  func(error)
	now      func() time.Time
	timeout  time.Duration
	wrap     func(string, error) error

	mu      sync.Mutex
	grants  map[string]*sharedGrant
	leases  map[int64]clientv3.LeaseID // minute -> lease of its rpm keys
	swept   time.Time
	dirty   map[string]bool
	allotMu sync.Map // grant -> *sync.Mutex: one claim at a time per grant

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// sharedGrant is what this replica knows of one grant.
type sharedGrant struct {
	own     int64            // tokens this replica counted (cumulative)
	expires time.Time        // the grant's token exp
	others  map[string]int64 // tokens other replicas reported
	minute  int64            // minute of the allotment (unix seconds)
	left    int64            // units of it not handed out yet
}

var _ proxy.SharedCounters = (*Counters)(nil)

type tokensRecord struct {
	Tokens  int64     `json:"tokens"`
	Expires time.Time `json:"expires"`
}

// Counters opens the shared counters and starts their flush loop and
// watch; Close them before closing db.
func (db *DB) Counters(o CounterOptions) (*Counters, error) {
	return OpenCounters(db.cli, db.prefix, db.opTO, db.wrap, o)
}

// OpenCounters opens the counters under prefix with cli (see DB.Counters);
// wrap names errors (nil: plain).
func OpenCounters(cli *clientv3.Client, prefix string, timeout time.Duration, wrap func(string, error) error, o CounterOptions) (*Counters, error) {
	if o.Replica == "" {
		host, _ := os.Hostname()
		o.Replica = fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32())
	}
	if strings.ContainsAny(o.Replica, "/") {
		return nil, fmt.Errorf("etcdstore: counters: replica name %q holds a slash", o.Replica)
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.OnError == nil {
		o.OnError = func(error) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if timeout <= 0 {
		timeout = DefaultOpTimeout
	}
	if wrap == nil {
		wrap = func(what string, err error) error { return fmt.Errorf("etcdstore: %s: %w", what, err) }
	}
	c := &Counters{cli: cli, prefix: prefix, replica: o.Replica, interval: o.FlushInterval, onError: o.OnError, now: o.Now,
		timeout: timeout, wrap: wrap, grants: map[string]*sharedGrant{}, leases: map[int64]clientv3.LeaseID{}, dirty: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	resp, err := cli.Get(ctx, prefix+countersDir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return nil, wrap("counters: open", err)
	}
	go c.run(resp.Header.Revision + 1)
	return c, nil
}

func (c *Counters) grantDir(grant string) string {
	return c.prefix + countersDir + url.PathEscape(grant) + "/"
}

func (c *Counters) rpmKey(grant string, minute int64) string {
	return c.grantDir(grant) + "rpm/" + strconv.FormatInt(minute, 10)
}

func (c *Counters) tokensKey(grant, replica string) string {
	return c.grantDir(grant) + "tokens/" + replica
}

func (c *Counters) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(clientv3.WithRequireLeader(ctx), c.timeout)
}

// Load returns what the grant has spent across every replica: the tokens
// of its budget and the requests claimed in the current minute.
func (c *Counters) Load(ctx context.Context, grant string) (proxy.GrantUsage, error) {
	now := c.now().UTC()
	minute := now.Truncate(time.Minute)
	ctx, cancel := c.op(ctx)
	defer cancel()
	resp, err := c.cli.Txn(ctx).Then(
		clientv3.OpGet(c.grantDir(grant)+"tokens/", clientv3.WithPrefix()),
		clientv3.OpGet(c.rpmKey(grant, minute.Unix())),
	).Commit()
	if err != nil {
		return proxy.GrantUsage{}, c.wrap("counters: load "+grant, err)
	}
	rs := gets(resp)
	others := map[string]int64{}
	for _, kv := range rs[0].Kvs {
		var r tokensRecord
		if json.Unmarshal(kv.Value, &r) != nil {
			continue
		}
		others[string(kv.Key[len(c.grantDir(grant))+len("tokens/"):])] = r.Tokens
	}
	var requests int64
	if len(rs[1].Kvs) == 1 {
		requests, _ = strconv.ParseInt(string(rs[1].Kvs[0].Value), 10, 64)
	}
	c.mu.Lock()
	g := c.grantLocked(grant)
	for r, n := range others {
		if r == c.replica {
			g.own = max(g.own, n) // our own record from an earlier Flush
			continue
		}
		g.others[r] = max(g.others[r], n)
	}
	total := g.total()
	c.mu.Unlock()
	u := proxy.GrantUsage{Tokens: total}
	if requests > 0 {
		u.Requests, u.Minute = requests, minute
	}
	return u, nil
}

func (c *Counters) grantLocked(grant string) *sharedGrant {
	g := c.grants[grant]
	if g == nil {
		g = &sharedGrant{others: map[string]int64{}}
		c.grants[grant] = g
	}
	return g
}

func (g *sharedGrant) total() int64 {
	t := g.own
	for _, n := range g.others {
		t += n
	}
	return t
}

// Add counts reported tokens (buffered; written every FlushInterval).
// Requests are counted by Take.
func (c *Counters) Add(grant string, d proxy.UsageDelta) {
	if d.Tokens == 0 && !d.Expires.After(time.Time{}) {
		return
	}
	c.mu.Lock()
	g := c.grantLocked(grant)
	g.own += d.Tokens
	if d.Expires.After(g.expires) {
		g.expires = d.Expires
	}
	if d.Tokens != 0 {
		c.dirty[grant] = true
	}
	c.mu.Unlock()
}

// Spent is the grant's token usage as this replica knows it: its own and
// what the others reported (no I/O).
func (c *Counters) Spent(grant string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.grants[grant]; g != nil {
		return g.total()
	}
	return 0
}

// Take claims one request of the grant's rpm in the minute of at. It hands
// out units of this replica's allotment and claims a new allotment from
// the shared counter when it runs out: false when the replicas together
// have used the minute up.
func (c *Counters) Take(ctx context.Context, grant string, at time.Time, rpm int64) (bool, error) {
	if rpm <= 0 {
		return true, nil
	}
	minute := at.UTC().Truncate(time.Minute).Unix()
	if c.takeLocal(grant, minute) {
		return true, nil
	}
	mu, _ := c.allotMu.LoadOrStore(grant, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if c.takeLocal(grant, minute) { // another caller claimed meanwhile
		return true, nil
	}
	got, err := c.claim(ctx, grant, minute, rpm, Allotment(rpm))
	if err != nil || got == 0 {
		return false, err
	}
	c.mu.Lock()
	g := c.grantLocked(grant)
	if g.minute != minute {
		g.minute, g.left = minute, 0
	}
	g.left += got - 1
	c.mu.Unlock()
	return true, nil
}

func (c *Counters) takeLocal(grant string, minute int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.grants[grant]
	if g == nil || g.minute != minute || g.left <= 0 {
		return false
	}
	g.left--
	return true
}

// claim adds up to want units to the minute's shared counter, never past
// rpm, and returns how many it added.
func (c *Counters) claim(ctx context.Context, grant string, minute, rpm, want int64) (int64, error) {
	k := c.rpmKey(grant, minute)
	lease, err := c.minuteLease(ctx, minute)
	if err != nil {
		return 0, err
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	resp, err := c.cli.Get(ctx, k)
	if err != nil {
		return 0, c.wrap("counters: read rpm", err)
	}
	for attempt := 0; attempt < 64; attempt++ {
		var used, rev int64
		if len(resp.Kvs) == 1 {
			used, _ = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
			rev = resp.Kvs[0].ModRevision
		}
		n := min(want, rpm-used)
		if n <= 0 {
			return 0, nil
		}
		tr, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, strconv.FormatInt(used+n, 10), clientv3.WithLease(lease))).
			Else(clientv3.OpGet(k)).Commit()
		if err != nil {
			return 0, c.wrap("counters: claim rpm", err)
		}
		if tr.Succeeded {
			return n, nil
		}
		resp = gets(tr)[0]
	}
	return 0, errors.New("etcdstore: counters: the minute's counter kept changing; try again")
}

// minuteLease returns the lease this replica binds a minute's counters to.
func (c *Counters) minuteLease(ctx context.Context, minute int64) (clientv3.LeaseID, error) {
	c.mu.Lock()
	id, ok := c.leases[minute]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	l, err := c.cli.Grant(ctx, rpmLeaseTTL)
	if err != nil {
		return 0, c.wrap("counters: lease", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.leases[minute]; ok {
		return id, nil // granted twice; the spare one just expires
	}
	c.leases[minute] = l.ID
	for m := range c.leases {
		if m < minute-120 {
			delete(c.leases, m)
		}
	}
	return l.ID, nil
}

func (c *Counters) run(rev int64) {
	defer close(c.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); c.watch(ctx, rev) }()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			cancel()
			<-watchDone
			return
		case <-t.C:
			if err := c.Flush(); err != nil {
				c.onError(err)
			}
		}
	}
}

// watch follows the other replicas' token records of known grants.
func (c *Counters) watch(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		ch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix+countersDir, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithFilterDelete())
		for resp := range ch {
			if err := resp.Err(); err != nil {
				c.onError(fmt.Errorf("etcdstore: counters watch: %w", err))
				break
			}
			rev = resp.Header.Revision + 1
			for _, ev := range resp.Events {
				c.observe(string(ev.Kv.Key), ev.Kv.Value)
			}
		}
		if ctx.Err() != nil {
			return
		}
		// Lost (compacted or no leader): catch up from now; grants re-read
		// what they missed on their next Load only, so read known ones.
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		resp, err := c.cli.Get(rctx, c.prefix+countersDir, clientv3.WithPrefix())
		cancel()
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		for _, kv := range resp.Kvs {
			c.observe(string(kv.Key), kv.Value)
		}
		rev = resp.Header.Revision + 1
	}
}

// observe takes in a tokens record of another replica for a known grant.
func (c *Counters) observe(key string, value []byte) {
	rest, ok := strings.CutPrefix(key, c.prefix+countersDir)
	if !ok {
		return
	}
	esc, tail, ok := strings.Cut(rest, "/tokens/")
	if !ok || strings.Contains(tail, "/") || tail == c.replica {
		return
	}
	grant, err := url.PathUnescape(esc)
	if err != nil {
		return
	}
	var r tokensRecord
	if json.Unmarshal(value, &r) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.grants[grant]; g != nil {
		g.others[tail] = max(g.others[tail], r.Tokens)
	}
}

// Flush writes this replica's token counts that changed and, every ten
// minutes, drops token records of grants expired for over an hour.
func (c *Counters) Flush() error {
	now := c.now()
	c.mu.Lock()
	type rec struct {
		grant string
		r     tokensRecord
	}
	var batch []rec
	for grant := range c.dirty {
		g := c.grants[grant]
		batch = append(batch, rec{grant, tokensRecord{Tokens: g.own, Expires: g.expires}})
	}
	clear(c.dirty)
	sweep := now.Sub(c.swept) >= 10*time.Minute
	var expired []string
	if sweep {
		c.swept = now
		for grant, g := range c.grants {
			if !g.expires.IsZero() && now.After(g.expires.Add(time.Hour)) {
				expired = append(expired, grant)
				delete(c.grants, grant)
				c.allotMu.Delete(grant)
			}
		}
	}
	c.mu.Unlock()
	var errs []error
	for len(batch) > 0 {
		n := min(len(batch), 100)
		ops := make([]clientv3.Op, 0, n)
		for _, r := range batch[:n] {
			b, _ := json.Marshal(r.r)
			ops = append(ops, clientv3.OpPut(c.tokensKey(r.grant, c.replica), string(b)))
		}
		ctx, cancel := c.op(context.Background())
		_, err := c.cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			c.mu.Lock()
			for _, r := range batch { // written next time
				c.dirty[r.grant] = true
				if c.grants[r.grant] == nil {
					c.grants[r.grant] = &sharedGrant{own: r.r.Tokens, expires: r.r.Expires, others: map[string]int64{}}
				}
			}
			c.mu.Unlock()
			errs = append(errs, c.wrap("counters: flush", err))
			break
		}
		batch = batch[n:]
	}
	for _, grant := range expired {
		ctx, cancel := c.op(context.Background())
		_, err := c.cli.Delete(ctx, c.grantDir(grant)+"tokens/", clientv3.WithPrefix())
		cancel()
		if err != nil {
			errs = append(errs, c.wrap("counters: drop expired", err))
		}
	}
	if sweep {
		errs = append(errs, c.sweepOrphans(now))
	}
	return errors.Join(errs...)
}

// sweepOrphans drops the token records of every grant expired for over an
// hour, also those only a replica that is gone knew of.
func (c *Counters) sweepOrphans(now time.Time) error {
	ctx, cancel := c.op(context.Background())
	defer cancel()
	resp, err := c.cli.Get(ctx, c.prefix+countersDir, clientv3.WithPrefix())
	if err != nil {
		return c.wrap("counters: sweep", err)
	}
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		if !strings.Contains(string(kv.Key), "/tokens/") {
			continue
		}
		var r tokensRecord
		if json.Unmarshal(kv.Value, &r) != nil || r.Expires.IsZero() || !now.After(r.Expires.Add(time.Hour)) {
			continue
		}
		// Only if unchanged since read: a replica still counting keeps it.
		ops = append(ops, clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
			[]clientv3.Op{clientv3.OpDelete(string(kv.Key))}, nil))
	}
	for _, op := range ops {
		cmp, then, _ := op.Txn()
		if _, err := c.cli.Txn(ctx).If(cmp...).Then(then...).Commit(); err != nil {
			return c.wrap("counters: sweep", err)
		}
	}
	return nil
}

// Close stops the loops and writes what is buffered.
func (c *Counters) Close() error {
	c.once.Do(func() { close(c.stop) })
	<-c.done
	return c.Flush()
}
