package ipc

import (
	"encoding/binary"
	"unsafe"
)

func unsafePointer(b []byte) unsafe.Pointer    { return unsafe.Pointer(&b[0]) }
func unsafePointer32(p *uint32) unsafe.Pointer { return unsafe.Pointer(p) }
func nativeUint32(b []byte) uint32             { return binary.NativeEndian.Uint32(b) }
