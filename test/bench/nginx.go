package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// nginxProxy is the comparison a user would otherwise build: an nginx
// reverse proxy on loopback that adds the same Authorization header and
// opens a new upstream TLS connection per request (no upstream keepalive,
// no TLS session reuse, certificate verified like the worker does).
type nginxProxy struct {
	cmd     *exec.Cmd
	addr    string
	version string
	pids    func() []int
}

const nginxConf = `worker_processes 2;
daemon off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
{{user}}
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path {{dir}}/tmp-body;
	proxy_temp_path {{dir}}/tmp-proxy;
	fastcgi_temp_path {{dir}}/tmp-fastcgi;
	uwsgi_temp_path {{dir}}/tmp-uwsgi;
	scgi_temp_path {{dir}}/tmp-scgi;
	server {
		listen {{listen}} backlog=4096;
		location / {
			proxy_pass https://{{upstream}};
			proxy_http_version 1.1;
			proxy_set_header Host {{host}};
			proxy_set_header Connection close;
			proxy_set_header Authorization "Bearer {{key}}";
			proxy_ssl_server_name on;
			proxy_ssl_name {{host}};
			proxy_ssl_verify on;
			proxy_ssl_trusted_certificate {{ca}};
			proxy_ssl_session_reuse off;
		}
	}
}
`

// startNginx writes the configuration and starts nginx in the foreground;
// it returns an error saying why when nginx cannot be had.
func startNginx(e *benchEnv) (*nginxProxy, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, errors.New("nginx is not installed (the bench script installs it with apt-get when run as root)")
	}
	ver, _ := exec.Command(bin, "-v").CombinedOutput()
	dir := filepath.Join(e.work, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	userLine := ""
	if os.Getuid() == 0 {
		userLine = "user nobody nogroup;"
	}
	conf := strings.NewReplacer("{{dir}}", dir, "{{listen}}", addr, "{{upstream}}", e.upAddr, "{{host}}", upstreamHost,
		"{{key}}", e.key, "{{ca}}", e.ca, "{{user}}", userLine).Replace(nginxConf)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", cf)
	errf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = errf, errf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	p := &nginxProxy{cmd: cmd, addr: addr, version: strings.TrimSpace(strings.TrimPrefix(string(ver), "nginx version: "))}
	master := cmd.Process.Pid
	p.pids = func() []int {
		out := []int{master}
		data, _ := os.ReadFile("/proc/" + strconv.Itoa(master) + "/task/" + strconv.Itoa(master) + "/children")
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop()
	log, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
	return nil, fmt.Errorf("nginx did not come up: %s", log)
}

func (p *nginxProxy) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
