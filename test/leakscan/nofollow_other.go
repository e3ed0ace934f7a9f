//go:build !linux

package leakscan

const noFollow = 0
