package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Outages. Connect pacing ([WithConnectPacing]) is for a server that is down or overloaded,
// which every replica of a service meets at once; it slows every new connection for
// recoverFor, so it starts only on a confirmed outage. A failed connect alone is no proof: a
// refusal may be a moment's (a full server, a restart already over), and a flow reset or ended
// mid-handshake may be the network's, cutting that flow alone (a middlebox, a stall ended by
// resets) while the server answers every other, when pacing would only slow the pool's
// recovery (faultbench's stall row: 74 of 80 connections paced, a read failed at its 10 s
// deadline). Confirmations:
//   - the server's word or silence twice in a row: connects refused (nothing listens),
//     refused at startup (starting up, shutting down, too many clients) or unanswered within
//     the connect timeout, the second begun after the first had failed, none working in
//     between;
//   - a connect cut by the network, and then a new connection to the server that gets no
//     answer to an SSLRequest within PingTimeout (a server down behind a TCP proxy, which
//     accepts and then resets every flow, looks like this; a network that cut one flow does
//     not);
//   - a confirmed failover (failover.go).

// recoverFor is how long after an outage signal new connections are paced.
const recoverFor = 10 * time.Second

// connectFailed is told of a connect that failed with err, and of when a connect had last
// been refused or unanswered with none working since, as it stood before this one began (0:
// none). See Outages above.
func (p *Pool) connectFailed(ctx context.Context, failedBefore int64, err error) {
	if !serverRefusedOrSilent(err) {
		p.probeServer(err)
		return
	}
	if failedBefore != 0 && p.connectFailedAt.Load() == failedBefore {
		p.outage(ctx, fmt.Errorf("a second connect in a row refused or unanswered: %w", err))
		return
	}
	p.connectFailedAt.CompareAndSwap(0, time.Now().UnixNano())
}

// serverRefusedOrSilent reports whether a connect failed by the server's word (an error it sent
// at startup: starting up, shutting down, too many clients, a password no longer accepted),
// because nothing listens (refused), or with no answer within the connect timeout; not a flow
// reset or ended mid-handshake.
func serverRefusedOrSilent(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) || errors.Is(err, syscall.ECONNREFUSED) || pgconn.Timeout(err)
}

// probeServer checks, in the background, whether the server still answers after a connect
// was cut with err, unless the pool already recovers or checks: no answer confirms an outage.
func (p *Pool) probeServer(err error) {
	if p.pace == nil || time.Now().UnixNano() < p.recovering.Load() || !p.probing.CompareAndSwap(false, true) {
		return
	}
	p.bg.Go(func() {
		defer p.probing.Store(false)
		if why := p.answers(p.life); why != nil && p.life.Err() == nil {
			p.outage(p.life, fmt.Errorf("a connect was cut (%w), and a new connection got no answer: %v", err, why))
		}
	})
}

// sslRequest is the message a client sends first to ask for TLS; a server answers it with one
// byte, S or N, before any authentication, from a process of its own.
var sslRequest = []byte{0, 0, 0, 8, 4, 210, 22, 47}

// answers dials the pool's server as a connection would (every address of every host of its
// connection string, see addresses, through its DialFunc) and asks each for TLS, within
// PingTimeout in all: nil as soon as one answers, otherwise why the last did not.
func (p *Pool) answers(ctx context.Context) error {
	cc := p.probeCfg.ConnConfig
	ctx, cancel := context.WithTimeout(ctx, p.cfg.PingTimeout)
	defer cancel()
	addrs, err := addresses(ctx, &cc.Config)
	if len(addrs) == 0 && err == nil {
		err = errors.New("the connection string resolves to no address")
	}
	for _, a := range addrs {
		if err = askTLS(ctx, cc.DialFunc, a.network, a.address); err == nil {
			return nil
		}
	}
	return err
}

// address is a network and an address to dial.
type address struct{ network, address string }

// addresses lists where pgconn dials for cc: each host of the connection string in turn, a
// Unix socket as it is, any other host resolved through cc's LookupFunc (the application's
// resolver, if it set one), whose answers may carry a port of their own. err is the last
// lookup's failure, if any.
func addresses(ctx context.Context, cc *pgconn.Config) (addrs []address, err error) {
	hosts := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port}}, cc.Fallbacks...)
	for _, h := range hosts {
		if network, addr := pgconn.NetworkAddress(h.Host, h.Port); network == "unix" || cc.LookupFunc == nil {
			addrs = append(addrs, address{network, addr})
			continue
		}
		ips, lerr := cc.LookupFunc(ctx, h.Host)
		if lerr != nil {
			err = lerr
		}
		for _, ip := range ips {
			host, port := ip, h.Port
			if sh, sp, serr := net.SplitHostPort(ip); serr == nil {
				if n, perr := strconv.ParseUint(sp, 10, 16); perr == nil {
					host, port = sh, uint16(n)
				}
			}
			network, addr := pgconn.NetworkAddress(host, port)
			addrs = append(addrs, address{network, addr})
		}
	}
	return addrs, err
}

// askTLS sends an SSLRequest over a new connection to addr and reads the answer.
func askTLS(ctx context.Context, dial pgconn.DialFunc, network, addr string) error {
	nc, err := dial(ctx, network, addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	var b [1]byte
	if _, err = nc.Write(sslRequest); err == nil {
		_, err = io.ReadFull(nc, b[:])
	}
	if err == nil && b[0] != 'S' && b[0] != 'N' {
		err = fmt.Errorf("answered an SSLRequest with %q", b[0])
	}
	return err
}

// outage records a sign, confirmed by why, that the server was down or has moved (connects
// refused or unanswered one after the other, a confirmed failover): new connections are paced for
// recoverFor, and the log says why.
func (p *Pool) outage(ctx context.Context, why error) {
	if p.pace != nil {
		p.recovering.Store(time.Now().Add(recoverFor).UnixNano())
		p.logs.info(ctx, p.log, "pgsteady: pacing new connections while the server recovers", "for", recoverFor, "confirmed_by", why)
	}
}

// beforeConnect paces a new connection while the pool recovers from an outage.
func (p *Pool) beforeConnect(ctx context.Context) error {
	if p.pace == nil || time.Now().UnixNano() >= p.recovering.Load() {
		return nil
	}
	p.stats.paced.Add(1)
	return p.pace.Wait(ctx)
}
