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
