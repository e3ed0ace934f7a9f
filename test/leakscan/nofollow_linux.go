package leakscan

import "syscall"

// noFollow makes opening a file refuse a symlink swapped in after the walk.
const noFollow = syscall.O_NOFOLLOW
