package applets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/spf13/cobra"
)

type invokeFlags struct {
	method, path, body, bodyFile, request, requestFile, credential string
	workspace, group                                               string
	headers, mpFields, mpFiles                                     []string
	stream                                                         bool
	timeoutMs                                                      int64
	namespace                                                      string
	exclude, wrap                                                  []string
}

// envelope is the --request JSON shape. It is strict: unknown fields, and a
// "url" field in particular, are refused.
type envelope struct {
	Capability string          `json:"capability"`
	Credential string          `json:"credential,omitempty"`
	Request    envelopeRequest `json:"request"`
}

type envelopeRequest struct {
	Method         string            `json:"method,omitempty"`
	Path           string            `json:"path,omitempty"`
	Headers        []policy.Header   `json:"headers,omitempty"`
	Body           *string           `json:"body,omitempty"`
	Multipart      map[string]any    `json:"multipart,omitempty"`
	MultipartFiles map[string]string `json:"multipartFiles,omitempty"`
	BodyFilePath   string            `json:"bodyFilePath,omitempty"`
}

// parseEnvelope decodes a --request envelope strictly (unknown fields, a
// "url" or "host" in particular, and trailing data are refused). It is pure:
// no file named in the envelope is read here.
func parseEnvelope(raw []byte) (envelope, error) {
	var env envelope
	if err := ipc.DecodeStrict(raw, &env); err != nil {
		return envelope{}, policy.Errorf(policy.ClassInvalidRequest, "the request envelope is not valid: %v", strings.TrimPrefix(err.Error(), "ipc: malformed frame: ")).WithHint("fields: capability, credential, request{method, path, headers[{name,value}], body | multipart + multipartFiles | bodyFilePath}; hosts and URLs come from policy, never from the caller")
	}
	return env, nil
}

func newInvokeCmds(parent string) []*cobra.Command {
	mk := func(use string, aliases []string, mode string, short string) *cobra.Command {
		var f invokeFlags
		cmd := &cobra.Command{
			Use:     use + " CAPABILITY",
			Aliases: aliases,
			Short:   short,
			Args:    cobra.RangeArgs(0, 1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return runInvoke(cmd, args, &f, mode)
			},
		}
		fl := cmd.Flags()
		fl.StringVar(&f.method, "method", "", "HTTP method (default: the capability's only one)")
		fl.StringVar(&f.path, "path", "", "path and query under an allowed prefix (default: the only one)")
		fl.StringArrayVar(&f.headers, "header", nil, "request header NAME=VALUE or 'Name: value' (repeatable; auth headers are refused)")
		fl.StringVar(&f.body, "body", "", "request body")
		fl.StringVar(&f.bodyFile, "body-file-path", "", "read the request body from this file (read by this client, as you)")
		fl.StringArrayVar(&f.mpFields, "multipart-field", nil, "multipart form field K=V (repeatable)")
		fl.StringArrayVar(&f.mpFiles, "multipart-file", nil, "multipart file FIELD=PATH (read by this client, as you; repeatable)")
		fl.StringVar(&f.request, "request", "", "the whole request as a JSON envelope")
		fl.StringVar(&f.requestFile, "request-file", "", "read the JSON envelope from this file ('-' for stdin)")
		fl.StringVar(&f.credential, "credential", "", "operator only: use this credential")
		fl.StringVar(&f.workspace, "workspace-id", "", "operator only: workspace context (agents get theirs from their grant)")
		fl.StringVar(&f.group, "group-id", "", "operator only: group context")
		fl.BoolVar(&f.stream, "stream", false, "pass SSE/chunked bodies through as they arrive")
		fl.Int64Var(&f.timeoutMs, "timeout-ms", 0, "request timeout in milliseconds (default 60000)")
		if mode == "markdown" {
			fl.StringVar(&f.namespace, "namespace", "", "heading for the output")
			fl.StringArrayVar(&f.exclude, "exclude-field", nil, "leave this JSON field out (repeatable)")
			fl.StringArrayVar(&f.wrap, "wrap-field", nil, "put this JSON field's value in a code block (repeatable)")
		}
		return cmd
	}
	invokeUse, invokeAliases := "invoke", []string(nil)
	if parent == "capability" {
		invokeAliases = []string{"call"}
	}
	return []*cobra.Command{
		mk(invokeUse, invokeAliases, "raw", "Call a capability; print the (sanitised) response body"),
		mk("json", nil, "json", "Call a capability; print {status, headers, body or json}"),
		mk("markdown", []string{"md"}, "markdown", "Call a capability; print the JSON response as Markdown"),
	}
}

func parseHeader(s string) (policy.Header, error) {
	if n, v, ok := strings.Cut(s, ":"); ok && !strings.Contains(n, "=") {
		return policy.Header{Name: strings.TrimSpace(n), Value: strings.TrimSpace(v)}, nil
	}
	if n, v, ok := strings.Cut(s, "="); ok {
		return policy.Header{Name: n, Value: v}, nil
	}
	return policy.Header{}, usagef("--header takes NAME=VALUE or 'Name: value'")
}

// buildInvoke turns flags (or an envelope) into invokeArgs. Every file is
// read HERE, by the client, as the calling user.
func buildInvoke(cc *cliCtx, args []string, f *invokeFlags) (invokeArgs, error) {
	var a invokeArgs
	if f.request != "" || f.requestFile != "" {
		raw := []byte(f.request)
		if f.requestFile != "" {
			var err error
			if f.requestFile == "-" {
				raw, err = io.ReadAll(io.LimitReader(cc.stdin, ipc.DefaultMaxFrame))
			} else {
				raw, err = os.ReadFile(f.requestFile)
			}
			if err != nil {
				return a, fmt.Errorf("--request-file: %w", err)
			}
		}
		env, err := parseEnvelope(raw)
		if err != nil {
			return a, err
		}
		if len(args) == 1 && env.Capability != "" && env.Capability != args[0] {
			return a, usagef("the envelope names %s but the command line names %s", env.Capability, args[0])
		}
		a.Capability = env.Capability
		if a.Capability == "" && len(args) == 1 {
			a.Capability = args[0]
		}
		a.Credential = env.Credential
		a.Method, a.Path, a.Headers = env.Request.Method, env.Request.Path, env.Request.Headers
		modes := 0
		if env.Request.Body != nil {
			modes++
			a.Body = []byte(*env.Request.Body)
		}
		if env.Request.BodyFilePath != "" {
			modes++
			b, err := os.ReadFile(env.Request.BodyFilePath)
			if err != nil {
				return a, fmt.Errorf("bodyFilePath: %w", err)
			}
			a.Body = b
		}
		if len(env.Request.Multipart) > 0 || len(env.Request.MultipartFiles) > 0 {
			modes++
			mp := &policy.Multipart{}
			for _, k := range sortedKeys(env.Request.Multipart) {
				mp.Fields = append(mp.Fields, policy.MultipartField{Name: k, Value: fmt.Sprint(env.Request.Multipart[k])})
			}
			for _, k := range sortedKeys(env.Request.MultipartFiles) {
				file, err := readMultipartFile(k, env.Request.MultipartFiles[k])
				if err != nil {
					return a, err
				}
				mp.Files = append(mp.Files, file)
			}
			a.Multipart = mp
		}
		if modes > 1 {
			return a, policy.Errorf(policy.ClassInvalidRequest, "give exactly one body mode: body, multipart or bodyFilePath")
		}
	} else {
		if len(args) != 1 {
			return a, usagef("name the capability to invoke (see 'aivault capability list')")
		}
		a.Capability = args[0]
		a.Method, a.Path = f.method, f.path
		for _, h := range f.headers {
			hh, err := parseHeader(h)
			if err != nil {
				return a, err
			}
			a.Headers = append(a.Headers, hh)
		}
		modes := 0
		if f.body != "" {
			modes++
			a.Body = []byte(f.body)
		}
		if f.bodyFile != "" {
			modes++
			b, err := os.ReadFile(f.bodyFile)
			if err != nil {
				return a, fmt.Errorf("--body-file-path: %w", err)
			}
			a.Body = b
		}
		if len(f.mpFields) > 0 || len(f.mpFiles) > 0 {
			modes++
			mp := &policy.Multipart{}
			for _, kv := range f.mpFields {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return a, usagef("--multipart-field takes K=V")
				}
				mp.Fields = append(mp.Fields, policy.MultipartField{Name: k, Value: v})
			}
			for _, kv := range f.mpFiles {
				k, p, ok := strings.Cut(kv, "=")
				if !ok {
					return a, usagef("--multipart-file takes FIELD=PATH")
				}
				file, err := readMultipartFile(k, p)
				if err != nil {
					return a, err
				}
				mp.Files = append(mp.Files, file)
			}
			a.Multipart = mp
		}
		if modes > 1 {
			return a, usagef("give exactly one of --body, --body-file-path or --multipart-*")
		}
	}
	if f.credential != "" {
		a.Credential = f.credential
	}
	a.WorkspaceID, a.GroupID = f.workspace, f.group
	a.Stream, a.TimeoutMs = f.stream, f.timeoutMs
	return a, nil
}

func readMultipartFile(field, path string) (policy.MultipartFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return policy.MultipartFile{}, fmt.Errorf("multipart file %s: %w", field, err)
	}
	ct := mime.TypeByExtension(filepath.Ext(path))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return policy.MultipartFile{Field: field, Filename: filepath.Base(path), ContentType: ct, Data: b}, nil
}

func runInvoke(cmd *cobra.Command, args []string, f *invokeFlags, mode string) error {
	cc := newCC(cmd)
	a, err := buildInvoke(cc, args, f)
	if err != nil {
		return err
	}
	ex, err := cc.openExec(modeInvoke)
	if err != nil {
		return err
	}
	defer ex.close()
	out := &invokeOutput{w: cc.stdout, mode: mode, stream: a.Stream, f: f}
	err = ex.invoke(cc.ctx, a, out.emit)
	if ferr := out.finish(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if out.status >= 300 && mode == "raw" {
		fmt.Fprintf(cc.stderr, "aivault: upstream answered HTTP %d\n", out.status)
		if out.status >= 400 {
			return &exitCodeError{code: 1}
		}
	}
	return nil
}

// invokeOutput renders Result frames in one of the output modes.
type invokeOutput struct {
	w       io.Writer
	mode    string
	stream  bool
	f       *invokeFlags
	status  int
	headers []ipc.Header
	body    bytes.Buffer
}

func (o *invokeOutput) emit(r ipc.Result) error {
	switch r.Kind {
	case ipc.ResultHead:
		o.status, o.headers = r.Status, r.Headers
	case ipc.ResultChunk:
		if o.mode == "raw" {
			_, err := o.w.Write(r.Data)
			if f, ok := o.w.(interface{ Sync() error }); ok && o.stream {
				_ = f.Sync()
			}
			return err
		}
		o.body.Write(r.Data)
	}
	return nil
}

func (o *invokeOutput) finish() error {
	switch o.mode {
	case "json":
		if o.status == 0 {
			return nil
		}
		hdr := map[string]string{}
		for _, h := range o.headers {
			hdr[strings.ToLower(h.Name)] = h.Value
		}
		res := map[string]any{"status": o.status, "headers": hdr}
		var js any
		if json.Unmarshal(o.body.Bytes(), &js) == nil {
			res["json"] = js
		} else {
			res["body"] = o.body.String()
		}
		return printJSON(o.w, res)
	case "markdown":
		if o.status == 0 {
			return nil
		}
		var js any
		if err := json.Unmarshal(o.body.Bytes(), &js); err != nil {
			_, err := o.w.Write(o.body.Bytes())
			return err
		}
		var buf bytes.Buffer
		if o.f.namespace != "" {
			fmt.Fprintf(&buf, "## %s\n\n", o.f.namespace)
		}
		excl := map[string]bool{}
		for _, e := range o.f.exclude {
			excl[e] = true
		}
		wrap := map[string]bool{}
		for _, e := range o.f.wrap {
			wrap[e] = true
		}
		renderMarkdown(&buf, js, 0, excl, wrap)
		_, err := o.w.Write(buf.Bytes())
		return err
	}
	return nil
}

func renderMarkdown(w *bytes.Buffer, v any, depth int, excl, wrap map[string]bool) {
	indent := strings.Repeat("  ", depth)
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if excl[k] {
				continue
			}
			val := t[k]
			if wrap[k] {
				b, _ := json.MarshalIndent(val, "", "  ")
				if s, ok := val.(string); ok {
					b = []byte(s)
				}
				fmt.Fprintf(w, "%s- **%s**:\n\n```\n%s\n```\n\n", indent, k, b)
				continue
			}
			switch val.(type) {
			case map[string]any, []any:
				fmt.Fprintf(w, "%s- **%s**:\n", indent, k)
				renderMarkdown(w, val, depth+1, excl, wrap)
			default:
				fmt.Fprintf(w, "%s- **%s**: %v\n", indent, k, scalar(val))
			}
		}
	case []any:
		for i, item := range t {
			switch item.(type) {
			case map[string]any, []any:
				fmt.Fprintf(w, "%s%d.\n", indent, i+1)
				renderMarkdown(w, item, depth+1, excl, wrap)
			default:
				fmt.Fprintf(w, "%s%d. %v\n", indent, i+1, scalar(item))
			}
		}
	default:
		fmt.Fprintf(w, "%s%v\n", indent, scalar(v))
	}
}

func scalar(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return t
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}
