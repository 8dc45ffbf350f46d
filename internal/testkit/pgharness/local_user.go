package pgharness

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUser is the unprivileged account the cluster's processes run as when the harness runs
// as root (initdb and postgres refuse to run as root).
type serverUser struct {
	name string
	cred *syscall.Credential
}

// unprivilegedUser returns nil when the process is not root. As root it returns the postgres
// account if there is one, else nobody.
func unprivilegedUser() (*serverUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &serverUser{name: name, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}, nil
	}
	return nil, fmt.Errorf("pgharness: running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as: %v", errs)
}

// chownAll gives root and everything under it to u (nothing to do when u is nil).
func (u *serverUser) chownAll(root string) error {
	if u == nil {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.cred.Uid), int(u.cred.Gid))
	})
}
