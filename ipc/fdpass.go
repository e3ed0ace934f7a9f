package ipc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNoFD is returned when a frame that must carry a file descriptor
// arrived without one.
var ErrNoFD = errors.New("ipc: expected a file descriptor, none was passed")

// ErrUnexpectedFD is returned when more descriptors arrived than were
// expected; every received descriptor has been closed.
var ErrUnexpectedFD = errors.New("ipc: unexpected file descriptors were passed")

// SendFD sends payload (at least one byte; a single zero byte when empty)
// together with f as SCM_RIGHTS ancillary data.
func SendFD(c *net.UnixConn, f *os.File, payload []byte) error {
	if f == nil {
		return errors.New("ipc: SendFD: nil file")
	}
	if len(payload) == 0 {
		payload = []byte{0}
	}
	// Control (unlike Fd) keeps the descriptor valid during the send and
	// does not switch the file to blocking mode, which would change the
	// shared open file description the receiver gets too.
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("ipc: send fd: %w", err)
	}
	var n, oobn int
	var rights []byte
	cerr := rc.Control(func(fd uintptr) {
		rights = unix.UnixRights(int(fd))
		n, oobn, err = c.WriteMsgUnix(payload, rights, nil)
	})
	if cerr != nil {
		return fmt.Errorf("ipc: send fd: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("ipc: send fd: %w", err)
	}
	if n != len(payload) || oobn != len(rights) {
		return fmt.Errorf("ipc: send fd: short write (%d/%d bytes, %d/%d control bytes)", n, len(payload), oobn, len(rights))
	}
	return nil
}

// RecvFD reads up to len(buf) bytes and at most one passed descriptor.
// f is nil when no descriptor came with these bytes. Receiving more than one
// descriptor, or truncated control data, is an error and every received
// descriptor is closed.
func RecvFD(c *net.UnixConn, buf []byte) (n int, f *os.File, err error) {
	oob := make([]byte, unix.CmsgSpace(4*4)) // room to notice extra fds
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return n, nil, err
	}
	fds, perr := parseRights(oob[:oobn])
	if flags&unix.MSG_CTRUNC != 0 {
		closeAll(fds)
		return n, nil, fmt.Errorf("%w (control data truncated)", ErrUnexpectedFD)
	}
	if perr != nil {
		closeAll(fds)
		return n, nil, perr
	}
	switch len(fds) {
	case 0:
		return n, nil, nil
	case 1:
		return n, os.NewFile(uintptr(fds[0]), "ipc-fd"), nil
	default:
		closeAll(fds)
		return n, nil, fmt.Errorf("%w (%d)", ErrUnexpectedFD, len(fds))
	}
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("ipc: parse control message: %w", err)
	}
	var fds []int
	var bad error
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			bad = fmt.Errorf("ipc: unexpected control message: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = syscall.Close(fd)
	}
}

// WriteFrameFD writes v as one frame (see WriteFrame) with f attached to the
// frame's first byte. A nil f writes a plain frame.
func WriteFrameFD(c *net.UnixConn, v any, f *os.File) error {
	if f == nil {
		return WriteFrame(c, v)
	}
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ipc: encode frame: %w", err)
	}
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	clear(payload)
	defer clear(buf)
	// The descriptor travels with the first byte; the rest is a plain write.
	if err := SendFD(c, f, buf[:1]); err != nil {
		return err
	}
	if _, err := c.Write(buf[1:]); err != nil {
		return fmt.Errorf("ipc: write frame: %w", err)
	}
	return nil
}

// ReadFrameFD reads one frame into v with strict decoding (see ReadFrame) and
// returns the descriptor that was attached to it, or nil when none was. A
// descriptor arriving after the frame's header is refused.
func ReadFrameFD(c *net.UnixConn, max int, v any) (*os.File, error) {
	var hdr [4]byte
	var f *os.File
	fail := func(err error) (*os.File, error) {
		if f != nil {
			_ = f.Close()
		}
		return nil, err
	}
	for got := 0; got < len(hdr); {
		n, rf, err := RecvFD(c, hdr[got:])
		if rf != nil {
			if f != nil {
				_ = rf.Close()
				return fail(fmt.Errorf("%w (more than one)", ErrUnexpectedFD))
			}
			f = rf
		}
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) && got > 0 {
				err = io.ErrUnexpectedEOF
			}
			return fail(err)
		}
		if n == 0 {
			if got == 0 {
				return fail(io.EOF)
			}
			return fail(io.ErrUnexpectedEOF)
		}
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if max <= 0 {
		max = DefaultMaxFrame
	}
	if uint64(size) > uint64(max) {
		return fail(fmt.Errorf("%w (%d > %d bytes)", ErrFrameTooLarge, size, max))
	}
	payload := make([]byte, size)
	defer clear(payload)
	for got := 0; got < len(payload); {
		n, rf, err := RecvFD(c, payload[got:])
		if rf != nil {
			_ = rf.Close()
			return fail(fmt.Errorf("%w (inside a frame body)", ErrUnexpectedFD))
		}
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fail(err)
		}
		if n == 0 {
			return fail(io.ErrUnexpectedEOF)
		}
	}
	if err := DecodeStrict(payload, v); err != nil {
		return fail(err)
	}
	return f, nil
}
