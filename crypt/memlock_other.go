//go:build !linux

package crypt

import "golang.org/x/sys/unix"

// memlockLimit returns the soft RLIMIT_MEMLOCK.
func memlockLimit() (cur uint64, unlimited bool, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, false, err
	}
	return rl.Cur, rl.Cur == unix.RLIM_INFINITY, nil
}

// hasCapIPCLock is false where capabilities are not Linux's.
func hasCapIPCLock() bool { return false }
