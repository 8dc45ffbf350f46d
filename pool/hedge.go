package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Hedged pre-pings. A pre-ping into a black-holed flow finds no answer, and its caller used to
// wait the whole PingTimeout before trying another connection. Now a caller waits for its
// pre-ping only as long as a live connection is expected to take to answer or to be opened
// (hedgeDelay): past that, the pool gives the connection up and pgxpool hands the caller
// another (an idle one, or a new one), as HikariCP reasons about waiting versus opening. The
// connection given up is settled in the background: whether its answer arrives within
// PingTimeout after all (a slow server: nothing learned) or not (a black hole, confirmed as
// before by checkBlackHole) decides what the pool learns, exactly as if the caller had waited.
//
// Why not race a second connection beside the ping and keep whichever wins: pgxpool's
// ShouldPing hook, where the pre-ping happens, can only keep or drop the connection it was
// given, and a ping abandoned on the caller's side is closed by pgx at once. So the answer is
// watched on a second descriptor of the socket (peeker.dup), which outlives pgx's. A ping that
// answers promptly costs what it did: one round trip, no goroutine, no allocation.

// hedgeFloor is the shortest hedge delay: below it a ping slowed by a busy machine's scheduler
// would cost a live connection, a reconnect later.
const hedgeFloor = 50 * time.Millisecond

// ewma is a moving average of durations (weight 1/8 for each new one), safe for concurrent use
// (a lost update among concurrent ones is harmless). With up set, a longer duration replaces
// the average at once: a pessimistic estimate, for connects, which slow down together when
// many open at once.
type ewma struct {
	ns atomic.Int64
	up bool
}

func (e *ewma) observe(d time.Duration) {
	old := e.ns.Load()
	if old == 0 || (e.up && int64(d) > old) {
		e.ns.Store(int64(d))
		return
	}
	e.ns.Store(old + (int64(d)-old)/8)
}

func (e *ewma) get() time.Duration { return time.Duration(e.ns.Load()) }

// hedgeDelay is how long a caller waits for a pre-ping before it is hedged: 8 times the usual
// successful ping, or twice the usual connect (TLS and authentication included), whichever is
// longer, at least hedgeFloor and at most PingTimeout (then nothing is hedged).
func (p *Pool) hedgeDelay() time.Duration {
	return min(max(hedgeFloor, 8*p.pingRTT.get(), 2*p.connectTime.get()), p.cfg.PingTimeout)
}

// hedge gives up c, whose pre-ping (started at start, after idle of idleness, on a connection
// last used at lastUsed) has not answered within the hedge delay: pgx has closed it, and
// pgxpool, told to ping it, destroys it and hands the caller another. In the background, the
// socket's second descriptor tells whether the answer comes within PingTimeout of start.
func (p *Pool) hedge(c *pgx.Conn, st *connState, idle time.Duration, lastUsed int64, start time.Time) {
	p.stats.hedged.Add(1)
	p.lastConnErr.set(fmt.Errorf("pre-ping of a connection idle %v found no answer within the hedge delay %v",
		idle.Round(time.Millisecond), time.Since(start).Round(time.Millisecond)))
	f := st.peek.detach()
	p.kill(c, st, ClosePingFailed)
	p.bg.Go(func() {
		err := awaitAnswer(p.life, f, start.Add(p.cfg.PingTimeout))
		switch {
		case p.life.Err() != nil: // the pool closed: nothing to learn
		case err == nil:
			p.logs.info(p.life, p.log, "pgsteady: a hedged pre-ping was answered late: the server is slow, the flow alive; nothing learned",
				"idle", idle, "after", time.Since(start))
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.pingFailed(p.life, idle, lastUsed, errPingTimeout{err})
		default:
			p.pingFailed(p.life, idle, lastUsed, err)
		}
	})
}

// awaitAnswer waits until deadline, or until life ends, for anything to arrive on f (a
// descriptor of a connection's socket, which it closes): nil if something did,
// os.ErrDeadlineExceeded if nothing did, or the error that ended the flow (io.EOF: the server
// closed it).
func awaitAnswer(life context.Context, f *os.File, deadline time.Time) error {
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetReadDeadline(deadline)
	stop := context.AfterFunc(life, func() { nc.SetReadDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	_, err = nc.Read(b[:])
	return err
}
