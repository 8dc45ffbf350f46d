package pgharness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LocalBinEnv names the environment variable that points [StartLocal] at a directory holding
// PostgreSQL's initdb and postgres, ahead of every other place it looks.
const LocalBinEnv = "PGSTEADY_PG_BINDIR"

// ErrNoLocalPostgres is returned (wrapped) by [StartLocal] when no directory holding both
// initdb and postgres is found.
var ErrNoLocalPostgres = errors.New("no PostgreSQL server binaries (initdb and postgres) found")

// binGlobs are the usual homes of PostgreSQL's server binaries: Debian and Ubuntu, Homebrew on
// Apple silicon and on Intel, Postgres.app, and the PGDG packages of Red Hat-like systems.
var binGlobs = []string{
	"/usr/lib/postgresql/*/bin",
	"/opt/homebrew/opt/postgresql@*/bin",
	"/opt/homebrew/opt/postgresql/bin",
	"/opt/homebrew/bin",
	"/usr/local/opt/postgresql@*/bin",
	"/usr/local/opt/postgresql/bin",
	"/usr/local/bin",
	"/Applications/Postgres.app/Contents/Versions/*/bin",
	"/usr/pgsql-*/bin",
}

// FindLocalBinaries returns the directory of the PostgreSQL server binaries [StartLocal] would
// use: $PGSTEADY_PG_BINDIR if set, else the directory of initdb on $PATH, else the newest
// major version under the usual Debian, Homebrew, Postgres.app and PGDG locations. The
// directory must hold both initdb and postgres. The error wraps [ErrNoLocalPostgres] and
// lists where it looked.
func FindLocalBinaries() (string, error) {
	if dir := os.Getenv(LocalBinEnv); dir != "" {
		if !hasServerBinaries(dir) {
			return "", fmt.Errorf("pgharness: %w in $%s=%s", ErrNoLocalPostgres, LocalBinEnv, dir)
		}
		return dir, nil
	}
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, g := range binGlobs {
		matches, _ := filepath.Glob(g)
		slices.SortFunc(matches, func(a, b string) int { return compareVersionedPaths(b, a) }) // newest first
		dirs = append(dirs, matches...)
	}
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("pgharness: %w on $PATH or in %s", ErrNoLocalPostgres, strings.Join(binGlobs, ", "))
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersionedPaths orders paths by the numbers in them (so .../9.6/bin < .../15/bin <
// .../postgresql@17/bin), then as strings.
func compareVersionedPaths(a, b string) int {
	na, nb := pathNumbers(a), pathNumbers(b)
	if c := slices.Compare(na, nb); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func pathNumbers(p string) []int {
	var out []int
	for _, f := range strings.FieldsFunc(p, func(r rune) bool { return r < '0' || r > '9' }) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// serverVersion asks postgres for its version ("15.18").
func serverVersion(bin string) (string, error) {
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pgharness: %s --version: %w", filepath.Join(bin, "postgres"), err)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return "", fmt.Errorf("pgharness: %s --version printed %q", filepath.Join(bin, "postgres"), out)
	}
	return f[2], nil
}
