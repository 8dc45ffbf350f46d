package pool

// The unexported COMMIT-resolution building blocks, for xact_test.go (package pool_test, which
// has the test server).

type XactStatus = xactStatus

const (
	XactUnknown    = xactUnknown
	XactCommitted  = xactCommitted
	XactAborted    = xactAborted
	XactInProgress = xactInProgress
)

var (
	BeginWithXact   = beginWithXact
	ResolveXact     = resolveXact
	ParseXactStatus = parseXactStatus
	CommitUncertain = commitUncertain
)

type XactRef = xactRef

var ErrXidReused = errXidReused

// NewXactRef builds a reference to transaction xid on a server whose crash stamp is stamp.
func NewXactRef(xid uint64, stamp string) XactRef { return xactRef{xid: xid, stamp: stamp} }

// Xid and Stamp take a reference apart.
func (r xactRef) Xid() uint64   { return r.xid }
func (r xactRef) Stamp() string { return r.stamp }
