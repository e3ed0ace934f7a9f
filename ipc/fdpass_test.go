package ipc

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func fdTestPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestFrameFDRoundTrip(t *testing.T) {
	a, b := fdTestPair(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	job := Job{V: ProtocolVersion, ServerName: "api.example.com", Method: "GET", Target: "/x", Body: bytes.Repeat([]byte("b"), 300000)}
	errc := make(chan error, 1)
	go func() { errc <- WriteFrameFD(a, job, pw) }()
	var got Job
	f, err := ReadFrameFD(b, 0, &got)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if f == nil {
		t.Fatal("no descriptor received")
	}
	defer f.Close()
	if got.ServerName != job.ServerName || !bytes.Equal(got.Body, job.Body) {
		t.Fatal("job changed in transit")
	}
	// The received descriptor is the pipe's write end.
	if _, err := f.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(pr, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("pipe read %q, %v", buf, err)
	}
}

func TestFrameFDWithoutFD(t *testing.T) {
	a, b := fdTestPair(t)
	go WriteFrameFD(a, Result{Kind: ResultEnd}, nil)
	var r Result
	f, err := ReadFrameFD(b, 0, &r)
	if err != nil || f != nil || r.Kind != ResultEnd {
		t.Fatalf("f=%v err=%v r=%+v", f, err, r)
	}
	a.Close()
	if _, err := ReadFrameFD(b, 0, &r); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestFrameFDRefusesFDInBody(t *testing.T) {
	a, b := fdTestPair(t)
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	defer pw.Close()
	// Header without a descriptor, then a descriptor on a body byte.
	done := make(chan error, 1)
	go func() {
		a.Write([]byte{0, 0, 0, 2, '{'})
		done <- SendFD(a, pw, []byte("}"))
	}()
	var r Result
	_, err := ReadFrameFD(b, 0, &r)
	if serr := <-done; serr != nil {
		t.Fatal(serr)
	}
	if !errors.Is(err, ErrUnexpectedFD) {
		t.Fatalf("err = %v, want ErrUnexpectedFD", err)
	}
}

func TestRecvFDRefusesSeveral(t *testing.T) {
	a, b := fdTestPair(t)
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	defer pw.Close()
	rights := unix.UnixRights(int(pr.Fd()), int(pw.Fd()))
	if _, _, err := a.WriteMsgUnix([]byte{0}, rights, nil); err != nil {
		t.Fatal(err)
	}
	if _, f, err := RecvFD(b, make([]byte, 1)); !errors.Is(err, ErrUnexpectedFD) || f != nil {
		t.Fatalf("f=%v err=%v", f, err)
	}
}

func TestReadFrameFDLimit(t *testing.T) {
	a, b := fdTestPair(t)
	go a.Write([]byte{0, 1, 0, 0})
	var r Result
	if _, err := ReadFrameFD(b, 1000, &r); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v", err)
	}
}

// FuzzReadFrameFD: arbitrary bytes from the peer never panic, and a frame
// that decodes re-encodes to an equivalent one.
func FuzzReadFrameFD(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x0e{\"kind\":\"end\"}"))
	f.Add([]byte("\x00\x00\x00\x02{}"))
	f.Add([]byte("\x00\x00\x00\x10{\"kind\":\"x\"}junk"))
	f.Add([]byte("\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := fdTestPair(t)
		go func() { a.Write(data); a.CloseWrite() }()
		var r Result
		fd, err := ReadFrameFD(b, 1<<16, &r)
		if fd != nil {
			t.Fatal("a descriptor appeared from nowhere")
		}
		if err != nil {
			return
		}
		c, d := fdTestPair(t)
		go WriteFrameFD(c, r, nil)
		var r2 Result
		if _, err := ReadFrameFD(d, 1<<16, &r2); err != nil {
			t.Fatalf("re-encoded frame unreadable: %v", err)
		}
	})
}
