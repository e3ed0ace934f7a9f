package applets

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/policy"
	"github.com/spf13/cobra"
)

func newCredentialCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "credential", Aliases: []string{"credentials"}, Short: "Bind secrets to an auth strategy and the hosts they may go to"}
	var (
		provider, auth, headerName, valueTemplate, queryParam, grantType, tokenEndpoint string
		awsService, awsRegion, hmacAlgo, pathPrefix, basicUser                          string
		secretRefs, hosts, authHeaders, scopes                                          []string
		sf                                                                              scopeFlags
	)
	create := &cobra.Command{
		Use:   "create ID --provider P --secret-ref vault:secret:<id> [--host H]...",
		Short: "Create a credential (registry providers take their auth from the registry)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := newCC(cmd)
			c := policy.Credential{ID: args[0], Provider: provider, Hosts: hosts, Scope: sf.scope, WorkspaceID: sf.workspace, GroupID: sf.group}
			refs := map[string]string{}
			for _, r := range secretRefs {
				ph, ref, ok := strings.Cut(r, "=")
				if !ok || strings.HasPrefix(r, "vault:") {
					ph, ref = "secret", r
				}
				refs[ph] = ref
			}
			if len(refs) == 0 {
				return usagef("--secret-ref is required (vault:secret:<id>, or PLACEHOLDER=vault:secret:<id>)")
			}
			a, err := authFromFlags(auth, headerName, valueTemplate, queryParam, authHeaders, grantType, tokenEndpoint, scopes, awsService, awsRegion, hmacAlgo, pathPrefix, basicUser)
			if err != nil {
				return err
			}
			c.Auth = a
			var out policy.Credential
			if err := callOp(cc, modeOperator, "credential.create", credentialCreateArgs{Credential: c, SecretRefs: refs}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "created credential %s (provider %s, auth %s, hosts %s)\n", out.ID, out.Provider, out.Auth.Kind(), strings.Join(out.Hosts, " "))
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&provider, "provider", "", "provider id (a registry provider, or a name of your own for a custom API)")
	f.StringArrayVar(&secretRefs, "secret-ref", nil, "vault:secret:<id|name|alias> (or PLACEHOLDER=vault:secret:<id>, repeatable; a name stored in several scopes means the one in the credential's scope)")
	f.StringVar(&auth, "auth", "", "custom providers: header, query, path, basic, multi_header, multi_query, o_auth2, aws_sig_v4, hmac, mtls")
	f.StringArrayVar(&hosts, "host", nil, "host the secret may be sent to (repeatable; per-tenant registry hosts such as shop1.myshopify.com)")
	f.StringVar(&headerName, "header-name", "", "header auth: header name")
	f.StringVar(&valueTemplate, "value-template", "", "header/hmac auth: value template, e.g. 'Bearer {{secret}}'")
	f.StringVar(&queryParam, "query-param", "", "query auth: parameter name")
	f.StringArrayVar(&authHeaders, "auth-header", nil, "multi_header auth: NAME=TEMPLATE (repeatable)")
	f.StringVar(&grantType, "grant-type", "", "o_auth2: refresh_token or client_credentials")
	f.StringVar(&tokenEndpoint, "token-endpoint", "", "o_auth2: https token endpoint within the credential's hosts")
	f.StringArrayVar(&scopes, "scope", nil, "o_auth2: scope (repeatable)")
	f.StringVar(&awsService, "aws-service", "", "aws_sig_v4: service")
	f.StringVar(&awsRegion, "aws-region", "", "aws_sig_v4: region")
	f.StringVar(&hmacAlgo, "hmac-algorithm", "", "hmac: sha256 or sha512")
	f.StringVar(&pathPrefix, "path-prefix-template", "", "path auth: prefix template, e.g. /bot{{secret}}")
	f.StringVar(&basicUser, "basic-username", "", "basic auth: a fixed, non-secret user name")
	f.StringVar(&sf.scope, "credential-scope", "", "global, workspace or group")
	f.StringVar(&sf.workspace, "workspace-id", "", "workspace id")
	f.StringVar(&sf.group, "group-id", "", "group id")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var out []policy.Credential
			if err := callOp(cc, modeOperator, "credential.list", struct{}{}, &out); err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []policy.Credential{}
				}
				return printJSON(cc.stdout, out)
			}
			tw := tabwriter.NewWriter(cc.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPROVIDER\tAUTH\tHOSTS\tSCOPE\tAUTO")
			for _, c := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", c.ID, c.Provider, c.Auth.Kind(), strings.Join(c.Hosts, " "), c.Scope, c.Auto)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVarP(&asJSON, "json", "v", false, "print JSON")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a credential",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := newCC(cmd)
			if err := callOp(cc, modeOperator, "credential.delete", idArgs{ID: args[0]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "deleted credential %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func authFromFlags(kind, headerName, valueTemplate, queryParam string, authHeaders []string, grantType, tokenEndpoint string, scopes []string, awsService, awsRegion, hmacAlgo, pathPrefix, basicUser string) (policy.Auth, error) {
	var a policy.Auth
	switch kind {
	case "":
		return a, nil
	case policy.AuthKindHeader:
		a.Header = &policy.AuthHeader{HeaderName: headerName, ValueTemplate: valueTemplate}
	case policy.AuthKindQuery:
		a.Query = &policy.AuthQuery{ParamName: queryParam}
	case policy.AuthKindPath:
		a.Path = &policy.AuthPath{PrefixTemplate: pathPrefix}
	case policy.AuthKindBasic:
		a.Basic = &policy.AuthBasic{Username: basicUser}
	case policy.AuthKindMultiHeader, "multi-header":
		for _, h := range authHeaders {
			n, t, ok := strings.Cut(h, "=")
			if !ok {
				return a, usagef("--auth-header takes NAME=TEMPLATE")
			}
			a.MultiHeader = append(a.MultiHeader, policy.AuthHeader{HeaderName: n, ValueTemplate: t})
		}
	case policy.AuthKindMultiQuery, "multi-query":
		for _, h := range authHeaders {
			n, t, ok := strings.Cut(h, "=")
			if !ok {
				return a, usagef("--auth-header takes NAME=TEMPLATE (query parameters for multi_query)")
			}
			a.MultiQuery = append(a.MultiQuery, policy.AuthQueryParam{ParamName: n, ValueTemplate: t})
		}
	case policy.AuthKindOAuth2, "oauth2":
		a.OAuth2 = &policy.AuthOAuth2{GrantType: grantType, TokenEndpoint: tokenEndpoint, Scopes: scopes}
	case policy.AuthKindAWSSigV4, "aws-sigv4", "sigv4":
		a.AWSSigV4 = &policy.AuthSigV4{Service: awsService, Region: awsRegion}
	case policy.AuthKindHMAC:
		a.HMAC = &policy.AuthHMAC{Algorithm: hmacAlgo, HeaderName: headerName, ValueTemplate: valueTemplate}
	case policy.AuthKindMTLS:
		a.MTLS = &policy.AuthMTLS{}
	default:
		return a, usagef("unknown --auth %q", kind)
	}
	return a, nil
}

// ---- capability ----

func newCapabilityCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "capability", Aliases: []string{"capabilities", "cap"}, Short: "List, describe, create and police capabilities; invoke them"}
	var asJSON bool
	var sf scopeFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List capabilities: ready (a credential exists) and available (registry, no key yet)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var out []capabilityView
			if err := callOp(cc, modeInvoke, "capability.list", capListArgs{WorkspaceID: sf.workspace, GroupID: sf.group}, &out); err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []capabilityView{}
				}
				return printJSON(cc.stdout, out)
			}
			for _, status := range []string{"ready", "available"} {
				var rows []capabilityView
				for _, v := range out {
					if v.Status == status {
						rows = append(rows, v)
					}
				}
				if len(rows) == 0 {
					continue
				}
				fmt.Fprintf(cc.stdout, "%s (%d):\n", status, len(rows))
				tw := tabwriter.NewWriter(cc.stdout, 0, 2, 2, ' ', 0)
				for _, v := range rows {
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", v.ID, strings.Join(v.Methods, ","), strings.Join(v.PathPrefixes, " "), strings.Join(v.Hosts, " "))
				}
				tw.Flush()
			}
			return nil
		},
	}
	list.Flags().BoolVarP(&asJSON, "json", "v", false, "print JSON")
	sf.add(list, false)

	var dJSON bool
	var dsf scopeFlags
	describe := &cobra.Command{
		Use:     "describe ID",
		Aliases: []string{"args", "shape", "inspect"},
		Short:   "Show what a capability allows and a ready-to-paste invoke line",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := newCC(cmd)
			var v capabilityView
			if err := callOp(cc, modeInvoke, "capability.describe", capDescribeArgs{ID: args[0], WorkspaceID: dsf.workspace, GroupID: dsf.group}, &v); err != nil {
				return err
			}
			if dJSON {
				return printJSON(cc.stdout, v)
			}
			tw := tabwriter.NewWriter(cc.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintf(tw, "capability:\t%s\n", v.ID)
			fmt.Fprintf(tw, "provider:\t%s\n", v.Provider)
			fmt.Fprintf(tw, "status:\t%s\n", v.Status)
			fmt.Fprintf(tw, "methods:\t%s\n", strings.Join(v.Methods, ", "))
			fmt.Fprintf(tw, "path prefixes:\t%s\n", strings.Join(v.PathPrefixes, " "))
			fmt.Fprintf(tw, "host:\t%s (https, port 443)\n", strings.Join(v.Hosts, " "))
			fmt.Fprintf(tw, "auth:\t%s\n", dash(v.AuthKind))
			if v.Credential != "" {
				fmt.Fprintf(tw, "credential:\t%s\n", v.Credential)
			} else if len(v.Secrets) > 0 {
				fmt.Fprintf(tw, "needs secrets:\t%s\n", strings.Join(v.Secrets, ", "))
			}
			if v.Problem != "" {
				fmt.Fprintf(tw, "problem:\t%s\n", v.Problem)
			}
			if v.RateLimitNote != "" {
				fmt.Fprintf(tw, "rate limit:\t%s\n", v.RateLimitNote)
			}
			if v.Policy != nil {
				if v.Policy.MaxRequestBodyBytes > 0 {
					fmt.Fprintf(tw, "max request body:\t%d bytes\n", v.Policy.MaxRequestBodyBytes)
				}
				if v.Policy.MaxResponseBodyBytes > 0 {
					fmt.Fprintf(tw, "max response body:\t%d bytes\n", v.Policy.MaxResponseBodyBytes)
				}
			}
			fmt.Fprintf(tw, "example:\t%s\n", v.Example)
			return tw.Flush()
		},
	}
	describe.Flags().BoolVar(&dJSON, "json", false, "print JSON")
	dsf.add(describe, false)

	var cred string
	var methods, paths, hosts []string
	create := &cobra.Command{
		Use:   "create ID --credential C --method M... --path P... --host H",
		Short: "Create a custom capability on a custom credential (exactly one host)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := newCC(cmd)
			if cred == "" {
				return usagef("--credential is required")
			}
			if len(hosts) != 1 {
				return usagef("a custom capability takes exactly one --host")
			}
			c := policy.Capability{ID: args[0], Credential: cred, Allow: policy.Allow{Hosts: hosts, Methods: upper(methods), PathPrefixes: paths}}
			if err := callOp(cc, modeOperator, "capability.create", c, nil); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "created capability %s\n", c.ID)
			return nil
		},
	}
	create.Flags().StringVar(&cred, "credential", "", "credential id")
	create.Flags().StringArrayVar(&methods, "method", nil, "allowed method (repeatable)")
	create.Flags().StringArrayVar(&paths, "path", nil, "allowed path prefix (repeatable; '/' allows all)")
	create.Flags().StringArrayVar(&hosts, "host", nil, "the one host")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a custom capability",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := newCC(cmd)
			if err := callOp(cc, modeOperator, "capability.delete", idArgs{ID: args[0]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "deleted capability %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, describe, create, del, newPolicyCmd(), newBindCmd(true), newBindCmd(false), newBindingsCmd())
	for _, c := range newInvokeCmds("capability") {
		cmd.AddCommand(c)
	}
	return cmd
}

func upper(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToUpper(s)
	}
	return out
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Per-capability limits: rate, request/response size, response blocklist"}
	var capID string
	var p policy.CapPolicy
	set := &cobra.Command{
		Use:   "set --capability ID [--rate-limit-per-minute N] [--max-request-body-bytes N] [--max-response-body-bytes N] [--response-block S]...",
		Short: "Set a capability's policy (replaces the previous one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			if capID == "" {
				return usagef("--capability is required")
			}
			if err := callOp(cc, modeOperator, "policy.set", policySetArgs{Capability: capID, Policy: p}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "policy set for %s\n", capID)
			return nil
		},
	}
	set.Flags().StringVar(&capID, "capability", "", "capability id")
	set.Flags().IntVar(&p.RateLimitPerMinute, "rate-limit-per-minute", 0, "calls per minute, across all processes (0 = unlimited)")
	set.Flags().Int64Var(&p.MaxRequestBodyBytes, "max-request-body-bytes", 0, "largest request body")
	set.Flags().Int64Var(&p.MaxResponseBodyBytes, "max-response-body-bytes", 0, "largest response body (decompressed)")
	set.Flags().StringArrayVar(&p.ResponseBlock, "response-block", nil, "string redacted from responses as [REDACTED] (repeatable)")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a capability's policy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cc := newCC(cmd)
			var out policySetArgs
			if err := callOp(cc, modeOperator, "policy.show", idArgs{ID: args[0]}, &out); err != nil {
				return err
			}
			return printJSON(cc.stdout, out)
		},
	}
	cmd.AddCommand(set, show)
	return cmd
}

func newBindCmd(bind bool) *cobra.Command {
	var b policy.Binding
	var ref string
	use, short := "bind", "Select which secret a capability uses in a scope"
	if !bind {
		use, short = "unbind", "Remove a binding"
	}
	cmd := &cobra.Command{
		Use:   use + " --capability ID --secret-ref vault:secret:<id> [--scope …]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			if b.Capability == "" {
				return usagef("--capability is required")
			}
			ex, err := cc.openExec(modeOperator)
			if err != nil {
				return err
			}
			defer ex.close()
			op := "bind"
			if !bind {
				op = "unbind"
			}
			if err := ex.call(op, bindArgs{Binding: b, SecretRef: ref}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "%s: %s\n", op, b.Capability)
			return nil
		},
	}
	cmd.Flags().StringVar(&b.Capability, "capability", "", "capability id")
	cmd.Flags().StringVar(&ref, "secret-ref", "", "vault:secret:<id>")
	cmd.Flags().StringVar(&b.Scope, "scope", "", "global, workspace or group")
	cmd.Flags().StringVar(&b.WorkspaceID, "workspace-id", "", "workspace id")
	cmd.Flags().StringVar(&b.GroupID, "group-id", "", "group id")
	cmd.Flags().StringVar(&b.Consumer, "consumer", "", "consumer label")
	return cmd
}

func newBindingsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bindings",
		Short: "List bindings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var out []policy.Binding
			if err := callOp(cc, modeOperator, "bindings", struct{}{}, &out); err != nil {
				return err
			}
			if out == nil {
				out = []policy.Binding{}
			}
			return printJSON(cc.stdout, out)
		},
	}
}

// ---- access ----

func newAccessCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "Grants: which agent user may invoke which capabilities, in which context"}
	var g policy.Grant
	grant := &cobra.Command{
		Use:   "grant --user U --capability PATTERN [--workspace-id W --group-id G]",
		Short: "Let an agent user invoke capabilities matching PATTERN (*, provider/*, or an id)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			if g.User == "" || g.Capability == "" {
				return usagef("--user and --capability are required")
			}
			var out policy.Grant
			if err := callOp(cc, modeOperator, "access.grant", g, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "granted %s (uid %d) %s\n", out.User, out.UID, out.Capability)
			return nil
		},
	}
	grant.Flags().StringVar(&g.User, "user", "", "agent user name or uid")
	grant.Flags().StringVar(&g.Capability, "capability", "", "capability pattern")
	grant.Flags().StringVar(&g.WorkspaceID, "workspace-id", "", "the context the agent runs in")
	grant.Flags().StringVar(&g.GroupID, "group-id", "", "the group the agent runs in")
	var r policy.Grant
	revoke := &cobra.Command{
		Use:   "revoke --user U [--capability PATTERN]",
		Short: "Remove grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			if r.User == "" {
				return usagef("--user is required")
			}
			var out map[string]int
			if err := callOp(cc, modeOperator, "access.revoke", r, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "revoked %d grant(s)\n", out["revoked"])
			return nil
		},
	}
	revoke.Flags().StringVar(&r.User, "user", "", "agent user")
	revoke.Flags().StringVar(&r.Capability, "capability", "", "capability pattern (default: all of the user's grants)")
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var out []policy.Grant
			if err := callOp(cc, modeOperator, "access.list", struct{}{}, &out); err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []policy.Grant{}
				}
				return printJSON(cc.stdout, out)
			}
			tw := tabwriter.NewWriter(cc.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tUID\tCAPABILITY\tWORKSPACE\tGROUP")
			for _, g := range out {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", g.User, g.UID, g.Capability, dash(g.WorkspaceID), dash(g.GroupID))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVarP(&asJSON, "json", "v", false, "print JSON")
	cmd.AddCommand(grant, revoke, list)
	return cmd
}

// ---- audit ----

func newAuditCmd() *cobra.Command {
	var q auditQueryArgs
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log, newest first (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var out []audit.Event
			if err := callOp(cc, modeOperator, "audit.query", q, &out); err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []audit.Event{}
				}
				return printJSON(cc.stdout, out)
			}
			for _, ev := range out {
				fmt.Fprintln(cc.stdout, audit.FormatHuman(ev))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&q.Limit, "limit", 200, "at most this many records")
	cmd.Flags().Int64Var(&q.BeforeTsMs, "before-ts-ms", 0, "only records before this time (unix ms)")
	cmd.Flags().StringVar(&q.Capability, "capability", "", "only this capability")
	cmd.Flags().StringVar(&q.User, "user", "", "only this user")
	cmd.Flags().BoolVarP(&asJSON, "json", "v", false, "print JSON")
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the keyed hash chain and name the first bad line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var rep audit.VerifyReport
			if err := callOp(cc, modeOperator, "audit.verify", struct{}{}, &rep); err != nil {
				return err
			}
			if !rep.OK {
				if rep.FirstBad != nil {
					fmt.Fprintf(cc.stdout, "audit chain BROKEN at %s line %d: %s\n", rep.FirstBad.File, rep.FirstBad.Line, rep.FirstBad.Why)
				}
				return &exitCodeError{code: 1}
			}
			fmt.Fprintf(cc.stdout, "audit chain OK: %d records in %d files\n", rep.Records, len(rep.Files))
			return nil
		},
	}
	cmd.AddCommand(verify, newAuditPruneCmd())
	return cmd
}

func lookupUser(s string) (int, string, error) {
	u, err := lookupUserEntry(s)
	if err != nil {
		return 0, "", policy.Errorf(policy.ClassInvalidRequest, "unknown user %q (users come from /etc/passwd)", s)
	}
	return u.uid, u.name, nil
}

var _ = os.Getenv
var _ = sort.Strings
