package test

// Harness commands for the daemon's process-level guarantees:
//
//	memscan [-b64] PID VALUE   reads /proc/PID/maps and every readable region
//	                           of /proc/PID/mem; fails if VALUE (raw, or
//	                           base64-decoded with -b64) is found. `! memscan`
//	                           asserts it IS found (to prove the scan works).
//	rawsock PATH HEX|garbage|oversize|half
//	                           connects to a daemon socket, reads its greeting,
//	                           sends a crafted frame and prints every frame the
//	                           daemon answers (one payload a line) until it
//	                           closes the connection.
//	rawsock -serve PATH HEX    listens on PATH in the background and answers
//	                           the first connection with the hex bytes (a
//	                           fake daemon greeting), then closes.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func cmdMemscan(ts *testscript.TestScript, neg bool, args []string) {
	b64 := false
	if len(args) > 0 && args[0] == "-b64" {
		b64, args = true, args[1:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: memscan [-b64] PID VALUE")
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil || pid <= 0 {
		ts.Fatalf("memscan: bad pid %q", args[0])
	}
	needle := []byte(args[1])
	if b64 {
		if needle, err = base64.StdEncoding.DecodeString(args[1]); err != nil {
			ts.Fatalf("memscan: -b64: %v", err)
		}
	}
	if len(needle) < 8 {
		ts.Fatalf("memscan: a value shorter than 8 bytes would match by chance")
	}
	found, scanned, regions, err := scanProcMem(pid, needle)
	if err != nil {
		ts.Fatalf("memscan: %v", err)
	}
	if scanned == 0 {
		ts.Fatalf("memscan: read nothing from /proc/%d/mem", pid)
	}
	ts.Logf("memscan: pid %d: %d bytes in %d readable regions scanned", pid, scanned, regions)
	switch {
	case found != "" && !neg:
		// Never print the value, only where it was.
		ts.Fatalf("memscan: the value is in the memory of pid %d (%s)", pid, found)
	case found == "" && neg:
		ts.Fatalf("memscan: the value is not in the memory of pid %d", pid)
	}
}

// scanProcMem searches every readable mapping of pid for needle. found names
// the mapping and offset of the first hit.
func scanProcMem(pid int, needle []byte) (found string, scanned int64, regions int, err error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return "", 0, 0, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return "", 0, 0, err
	}
	defer mem.Close()
	const chunk = 1 << 20
	buf := make([]byte, chunk+len(needle))
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "r") {
			continue
		}
		if len(f) >= 6 && f[5] == "[vsyscall]" {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		regions++
		// Read in chunks that overlap by len(needle)-1 bytes.
		for off := start; off < end; off += chunk {
			n := min(uint64(len(buf)), end-off)
			got, rerr := mem.ReadAt(buf[:n], int64(off))
			if got > 0 {
				scanned += int64(min(uint64(got), chunk))
				if i := bytes.Index(buf[:got], needle); i >= 0 {
					name := ""
					if len(f) >= 6 {
						name = f[5]
					}
					return fmt.Sprintf("mapping %s %s %s at +%#x", f[0], f[1], name, off-start+uint64(i)), scanned, regions, nil
				}
			}
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				break // unreadable (e.g. a device mapping): skip the rest
			}
		}
	}
	return "", scanned, regions, nil
}

func cmdRawsock(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 3 && args[0] == "-serve" {
		rawsockServe(ts, neg, args[1], args[2])
		return
	}
	if len(args) != 2 {
		ts.Fatalf("usage: rawsock PATH HEX|garbage|oversize|half  |  rawsock -serve PATH HEX")
	}
	path, what := ts.MkAbs(args[0]), args[1]
	var send []byte
	closeWrite := false
	switch what {
	case "garbage":
		// A plausible length with bytes that are no JSON.
		body := []byte("\x00\xff{{not json at all\x01\x02")
		send = binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		send = append(send, body...)
	case "oversize":
		// Announce 33 MiB (over the 32 MiB limit) and send a little of it.
		send = binary.BigEndian.AppendUint32(nil, 33<<20)
		send = append(send, bytes.Repeat([]byte{'x'}, 1024)...)
	case "half":
		// Announce 100 bytes, send 10, then stop writing.
		send = binary.BigEndian.AppendUint32(nil, 100)
		send = append(send, []byte(`{"v":1,"op`)...)
		closeWrite = true
	default:
		b, err := hex.DecodeString(what)
		if err != nil {
			ts.Fatalf("rawsock: %q is not hex, garbage, oversize or half", what)
		}
		send = b
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if neg {
			return
		}
		ts.Fatalf("rawsock: %v", err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(20 * time.Second))
	var out strings.Builder
	hello, err := readRawFrame(uc)
	if err != nil {
		ts.Fatalf("rawsock: no greeting: %v", err)
	}
	fmt.Fprintf(&out, "hello %s\n", hello)
	if _, err := uc.Write(send); err != nil {
		fmt.Fprintf(&out, "write error: %v\n", err)
	}
	if closeWrite {
		_ = uc.CloseWrite()
	}
	for {
		p, err := readRawFrame(uc)
		if err != nil {
			if errors.Is(err, io.EOF) {
				fmt.Fprintf(&out, "closed\n")
			} else {
				fmt.Fprintf(&out, "read error: %v\n", err)
			}
			break
		}
		fmt.Fprintf(&out, "frame %s\n", p)
	}
	// The answer goes to stdout for `stdout` checks.
	_, _ = io.WriteString(ts.Stdout(), out.String())
	if neg {
		ts.Fatalf("rawsock: unexpected success")
	}
}

func readRawFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 64<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

// rawsockServe answers the first connection on path with the given bytes.
func rawsockServe(ts *testscript.TestScript, neg bool, path, hx string) {
	if neg {
		ts.Fatalf("rawsock -serve does not support !")
	}
	b, err := hex.DecodeString(hx)
	if err != nil {
		ts.Fatalf("rawsock -serve: bad hex: %v", err)
	}
	path = ts.MkAbs(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		ts.Fatalf("rawsock -serve: %v", err)
	}
	// Let any user reach it (scripts run clients as other users).
	_ = os.Chmod(path, 0o666)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(b)
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
		c.Close()
	}()
	ts.Defer(func() {
		ln.Close()
		<-done
	})
}
