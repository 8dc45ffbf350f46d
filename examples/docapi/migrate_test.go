package main

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("embedded migrations: %+v, want version 1 first", ms)
	}

	file := &fstest.MapFile{Data: []byte("SELECT 1;")}
	ms, err = loadMigrations(fstest.MapFS{"m/0010_b.sql": file, "m/0002_a.sql": file}, "m")
	if err != nil || len(ms) != 2 || ms[0].version != 2 || ms[1].version != 10 {
		t.Errorf("got %+v, %v; want versions 2 then 10", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"no version":   {"m/init.sql": file},
		"version zero": {"m/0000_init.sql": file},
		"not SQL":      {"m/0001_init.txt": file},
		"same version": {"m/0001_a.sql": file, "m/1_b.sql": file},
	} {
		if _, err := loadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
