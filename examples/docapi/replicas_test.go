package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// TestReplicaReadsSeeUploads runs docapi on the harness's real primary and streaming standby
// (DATABASE_REPLICA_URLS naming the standby): an upload, then at once a get and a list of it,
// 100 times: each sees the upload, while a lookup sent straight to the standby first may not.
// Once the uploads stop, lists are served by the standby; with the standby stopped, by the
// primary, and none fails.
func TestReplicaReadsSeeUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short, against Docker")
	}
	ctx := t.Context()
	pair, err := pgharness.StartPair(ctx, pgharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	dsn, err := pair.Primary.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	standbyDSN := pgharness.WithAddr(dsn, pair.Standby.Addr())
	primaryCfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := replicaConfigs(" " + standbyDSN + " ")
	if err != nil {
		t.Fatal(err)
	}
	a := startAPI(t, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), primaryCfg, replicas)
	waitUntil(func() bool { return a.cluster.Stats().Members[1].Readable })
	standby, err := pgx.Connect(ctx, standbyDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close(context.Background())

	img := pngImage(t, 7)
	var staleGets, staleLists, missedOnStandby int
	for i := range 100 {
		k := kinds[i%len(kinds)]
		status, doc := a.upload(k, validForm(k), img, fmt.Sprintf("ryw-%d", i))
		if status != http.StatusCreated {
			t.Fatalf("upload %d: %d %v", i, status, doc)
		}
		docID := id(t, doc)
		// The control: the same lookup straight on the standby, at once (it shows the test can tell).
		var n int
		if err := standby.QueryRow(ctx, "SELECT count(*) FROM "+k.name+" WHERE id = $1", docID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			missedOnStandby++
		}
		if status, _, _ := a.request(http.MethodGet, fmt.Sprintf("/%s/%d", k.name, docID), "", "", nil); status != http.StatusOK {
			staleGets++
		}
		items, _ := a.getJSON("/"+k.name+"/all?limit=1", http.StatusOK)["items"].([]any)
		if len(items) == 0 || id(t, items[0].(map[string]any)) != docID {
			staleLists++
		}
	}
	s := a.cluster.Stats()
	t.Logf("upload, then get and list at once, 100 times: stale gets %d, stale lists %d; the standby itself missed %d of 100 uploads; "+
		"reads served by the standby %d, by the primary for read-your-writes %d",
		staleGets, staleLists, missedOnStandby, s.Members[1].Reads, s.PrimaryReadsForWrites)
	if staleGets > 0 || staleLists > 0 {
		t.Errorf("stale reads after an upload: %d gets, %d lists, want 0", staleGets, staleLists)
	}
	// With no upload in flight the standby catches up, and lists go to it.
	waitUntil(func() bool {
		a.getJSON("/permis/all", http.StatusOK)
		return a.cluster.Stats().Members[1].Reads > s.Members[1].Reads
	})
	// The standby killed: reads move to the primary, no request fails.
	before := a.cluster.Stats()
	if err := pair.Standby.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		a.getJSON("/permis/all", http.StatusOK)
	}
	if err := pair.Standby.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	after := a.cluster.Stats()
	t.Logf("the standby stopped: 50 lists answered 200; %d moved off it, %d on the primary for want of a replica",
		after.ReplicaFallbacks-before.ReplicaFallbacks, after.PrimaryReadsNoReplica-before.PrimaryReadsNoReplica)
	a.token = a.login(adminEmail, adminPassword)
	members, _ := a.getJSON("/debug/pool", http.StatusOK)["members"].([]any)
	if len(members) != 2 || members[1].(map[string]any)["role"] != pool.RoleReplica {
		t.Errorf("/debug/pool members: %v, want the primary and a replica", members)
	}
}
