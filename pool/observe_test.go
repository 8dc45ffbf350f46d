package pool

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

// everything observes every event, and notes each in seen.
type everything struct {
	BaseObserver
	seen *[]string
	name string
}

func (o everything) note(ev string) { *o.seen = append(*o.seen, o.name+" "+ev) }

func (o everything) Acquired(context.Context, AcquireEvent) { o.note("acquired") }
func (o everything) Retrying(context.Context, RetryEvent)   { o.note("retrying") }
func (o everything) PingFailed(context.Context, PingEvent)  { o.note("ping") }
func (o everything) ConnClosed(context.Context, CloseEvent) { o.note("closed") }
func (o everything) Committed(context.Context, CommitEvent) { o.note("committed") }

// retriesOnly observes retries and nothing else.
type retriesOnly struct {
	BaseObserver
	seen *[]string
}

func (o retriesOnly) Retrying(_ context.Context, e RetryEvent) {
	*o.seen = append(*o.seen, "retries-only retrying "+e.Class.String())
}

// sendAll sends one event of each kind to obs.
func sendAll(obs *observers) {
	ctx := context.Background()
	obs.Acquired(ctx, AcquireEvent{})
	obs.Retrying(ctx, RetryEvent{Attempt: 1, Class: retry.NotSent})
	obs.PingFailed(ctx, PingEvent{})
	obs.ConnClosed(ctx, CloseEvent{Reason: CloseBroken})
	obs.Committed(ctx, CommitEvent{Outcome: CommitOK})
}

func TestEachObserverGetsTheEventsItImplementsInTheOrderGiven(t *testing.T) {
	var seen []string
	var o options
	WithObserver(everything{seen: &seen, name: "a"})(&o)
	WithObserver(nil)(&o) // ignored
	WithObserver(retriesOnly{seen: &seen})(&o)
	WithObserver(everything{seen: &seen, name: "b"})(&o)
	obs, err := observerOf(o.observers)
	if err != nil {
		t.Fatal(err)
	}
	sendAll(obs)
	want := []string{
		"a acquired", "b acquired",
		"a retrying", "retries-only retrying not-sent", "b retrying",
		"a ping", "b ping",
		"a closed", "b closed",
		"a committed", "b committed",
	}
	if !slices.Equal(seen, want) {
		t.Errorf("events seen:\n%q\nwant:\n%q", seen, want)
	}
}

func TestNoObserverIsNil(t *testing.T) {
	if obs, err := observerOf(nil); obs != nil || err != nil {
		t.Fatalf("observerOf(nil) = %v, %v; want nil, nil (the pool skips its events)", obs, err)
	}
}

// oldStyle has the methods of the Observer before it took event structs: it observes nothing.
type oldStyle struct{ BaseObserver }

func (oldStyle) Retrying(context.Context, int, retry.Class, error) {}

func TestNewRefusesAnObserverThatObservesNothing(t *testing.T) {
	cfg, err := config.Parse("postgres://app@127.0.0.1:1/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.LazyStart = true // nothing to connect to: only the options are judged
	for _, o := range []Observer{oldStyle{}, BaseObserver{}} {
		p, err := New(t.Context(), cfg, WithObserver(o))
		if err == nil {
			p.Close()
			t.Errorf("New with a %T succeeded, want an error naming it", o)
		}
	}
}

// TestTheListsHoldEveryConstant keeps CloseReasons and CommitOutcomes, from which otelpool
// declares its attribute values, in step with the constants of their types in observe.go.
func TestTheListsHoldEveryConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "observe.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string][]string{} // type name -> the constants' values, in order
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if typ, ok := v.Type.(*ast.Ident); ok {
				for _, x := range v.Values {
					val, err := strconv.Unquote(x.(*ast.BasicLit).Value)
					if err != nil {
						t.Fatal(err)
					}
					declared[typ.Name] = append(declared[typ.Name], val)
				}
			}
		}
	}
	listed := map[string][]string{}
	for _, r := range CloseReasons() {
		listed["CloseReason"] = append(listed["CloseReason"], string(r))
	}
	for _, c := range CommitOutcomes() {
		listed["CommitOutcome"] = append(listed["CommitOutcome"], string(c))
	}
	for _, typ := range []string{"CloseReason", "CommitOutcome"} {
		if !slices.Equal(declared[typ], listed[typ]) {
			t.Errorf("%s constants %q, listed %q", typ, declared[typ], listed[typ])
		}
	}
}
