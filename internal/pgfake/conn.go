package pgfake

import (
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// conn is the server's side of one connection.
type conn struct {
	s  *Server
	id int
	nc net.Conn
	be *pgproto3.Backend
	tm *pgtype.Map

	tx     byte              // transaction status for ReadyForQuery: 'I', 'T' or 'E'
	stmts  map[string]string // prepared statements by name ("" the unnamed one)
	portal *portal           // the bound portal
	skip   bool              // an extended-protocol error: discard until Sync
}

// portal is a bound statement and, once described, its answer.
type portal struct {
	q       Query
	formats []int16
	answer  *Reply
}

// serve runs the connection until it closes.
func (c *conn) serve() {
	defer c.s.gone(c)
	defer c.nc.Close()
	c.be = pgproto3.NewBackend(c.nc, c.nc)
	c.tm = pgtype.NewMap()
	c.tx = 'I'
	c.stmts = map[string]string{}
	if !c.startup() {
		return
	}
	for {
		msg, err := c.be.Receive()
		if err != nil {
			return
		}
		if !c.handle(msg) {
			return
		}
	}
}

// startup answers the startup packet: trust authentication, the parameters, the key data.
func (c *conn) startup() bool {
	for {
		msg, err := c.be.ReceiveStartupMessage()
		if err != nil {
			return false
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.nc.Write([]byte{'N'}); err != nil {
				return false
			}
			continue
		case *pgproto3.StartupMessage:
		default: // a CancelRequest: nothing runs long enough here to cancel
			return false
		}
		break
	}
	params, refuse := c.s.startup()
	if refuse != nil {
		c.be.Send(errorResponse(refuse))
		c.be.Flush()
		return false
	}
	c.be.Send(&pgproto3.AuthenticationOk{})
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		c.be.Send(&pgproto3.ParameterStatus{Name: k, Value: params[k]})
	}
	c.be.Send(&pgproto3.BackendKeyData{ProcessID: uint32(c.id), SecretKey: []byte{0, 0, 0, byte(c.id)}})
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.tx})
	return c.be.Flush() == nil
}

// handle answers one message; false ends the connection.
func (c *conn) handle(msg pgproto3.FrontendMessage) bool {
	switch m := msg.(type) {
	case *pgproto3.Query:
		ok := c.answer(c.ask(Query{Conn: c.id, SQL: m.String}), nil, true)
		c.skip = false
		if ok {
			c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.tx})
			ok = c.be.Flush() == nil
		}
		return ok
	case *pgproto3.Sync:
		c.skip, c.portal = false, nil
		c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.tx})
		return c.be.Flush() == nil
	case *pgproto3.Terminate:
		return false
	case *pgproto3.Flush:
		return c.be.Flush() == nil
	}
	if c.skip {
		return true
	}
	return c.extended(msg)
}

// extended answers a message of the extended protocol.
func (c *conn) extended(msg pgproto3.FrontendMessage) bool {
	switch m := msg.(type) {
	case *pgproto3.Parse:
		c.stmts[m.Name] = m.Query
		c.be.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		q := Query{Conn: c.id, SQL: c.stmts[m.PreparedStatement]}
		for _, p := range m.Parameters {
			q.Args = append(q.Args, string(p))
		}
		c.portal = &portal{q: q, formats: slices.Clone(m.ResultFormatCodes)}
		c.be.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		if m.ObjectType == 'S' || c.portal == nil {
			return c.answer(Fail("0A000", "pgfake: describing a prepared statement is not supported: use default_query_exec_mode=exec"), nil, false)
		}
		r := c.ask(c.portal.q)
		c.portal.answer = &r
		switch {
		case r.kind != replyRows: // an error, a drop, a hang: at once
			return c.answer(r, nil, false)
		case r.cols == nil:
			c.be.Send(&pgproto3.NoData{})
		default:
			c.be.Send(c.rowDescription(r, c.portal.formats))
		}
	case *pgproto3.Execute:
		if c.portal == nil {
			return c.answer(Fail("34000", "pgfake: no portal bound"), nil, false)
		}
		r := c.portal.answer
		if r == nil {
			a := c.ask(c.portal.q)
			r = &a
		}
		return c.answer(*r, c.portal.formats, false)
	case *pgproto3.Close:
		c.be.Send(&pgproto3.CloseComplete{})
	}
	return true
}

// ask records q and gets the handler's answer, or the default one.
func (c *conn) ask(q Query) Reply {
	h := c.s.received(q)
	var r Reply
	if h != nil {
		r = h(q)
	}
	if r.kind == replyDefault {
		r = Default(q)
	}
	c.track(q.SQL, r.kind)
	return r
}

// track follows the transaction status through a statement answered with a reply of kind.
func (c *conn) track(sql string, kind replyKind) {
	switch v := verb(sql); {
	case v == "COMMIT" || v == "END" || v == "ROLLBACK" || v == "ABORT":
		c.tx = 'I' // a failed COMMIT rolls back too
	case kind == replyError && c.tx == 'T':
		c.tx = 'E'
	case kind == replyRows && (v == "BEGIN" || v == "START"):
		c.tx = 'T'
	}
}

// answer sends r; describe says a simple query, whose rows need their description. It
// returns false when the connection must end.
func (c *conn) answer(r Reply, formats []int16, describe bool) bool {
	switch r.kind {
	case replyDrop:
		return false
	case replyHang:
		io.Copy(io.Discard, c.nc)
		return false
	case replyFatal:
		c.be.Send(errorResponse(r.err))
		c.be.Flush()
		return false
	case replyError:
		c.be.Send(errorResponse(r.err))
		c.skip = true
		return true
	}
	if r.cols == nil && r.tag == "" {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
		return true
	}
	if r.cols != nil && describe {
		c.be.Send(c.rowDescription(r, nil))
	}
	oids := r.columnOIDs()
	for _, row := range r.rows {
		dr := &pgproto3.DataRow{Values: make([][]byte, len(r.cols))}
		for i := range r.cols {
			var v any
			if i < len(row) {
				v = row[i]
			}
			b, err := c.tm.Encode(oids[i], format(formats, i), v, nil)
			if err != nil {
				return c.answer(Fail("XX000", fmt.Sprintf("pgfake: encoding %v: %v", v, err)), nil, false)
			}
			if b == nil && v != nil {
				b = []byte{} // an empty value, not NULL
			}
			dr.Values[i] = b
		}
		c.be.Send(dr)
	}
	c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(r.tag)})
	return true
}

func (c *conn) rowDescription(r Reply, formats []int16) *pgproto3.RowDescription {
	oids := r.columnOIDs()
	rd := &pgproto3.RowDescription{}
	for i, name := range r.cols {
		rd.Fields = append(rd.Fields, pgproto3.FieldDescription{
			Name: []byte(name), DataTypeOID: oids[i], DataTypeSize: -1, TypeModifier: -1, Format: format(formats, i),
		})
	}
	return rd
}

// format is the result format of column i under Bind's format codes (none: text; one: all).
func format(formats []int16, i int) int16 {
	switch {
	case len(formats) == 0:
		return pgtype.TextFormatCode
	case len(formats) == 1:
		return formats[0]
	case i < len(formats):
		return formats[i]
	}
	return pgtype.TextFormatCode
}

func errorResponse(e *Error) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: e.Severity, SeverityUnlocalized: e.Severity, Code: e.Code, Message: e.Message}
}
