package applets

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aivault/aivault/crypt"
	"github.com/spf13/cobra"
)

type scopeFlags struct {
	scope, workspace, group string
}

func (s *scopeFlags) add(cmd *cobra.Command, withScope bool) {
	if withScope {
		cmd.Flags().StringVar(&s.scope, "scope", "", "global, workspace or group (default: from the ids given)")
	}
	cmd.Flags().StringVar(&s.workspace, "workspace-id", "", "workspace id")
	cmd.Flags().StringVar(&s.group, "group-id", "", "group id (within the workspace)")
}

type refFlags struct {
	id, name string
	scopeFlags
}

func (r *refFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.id, "id", "", "secret id")
	cmd.Flags().StringVar(&r.name, "name", "", "secret name")
}

func (r *refFlags) ref() (secretRef, error) {
	if (r.id == "") == (r.name == "") {
		return secretRef{}, usagef("name the secret with exactly one of --id or --name")
	}
	return secretRef{ID: r.id, Name: r.name, Scope: r.scope, WorkspaceID: r.workspace, GroupID: r.group}, nil
}

func newSecretsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Aliases: []string{"secret"}, Short: "Store and manage secrets (values are never shown)"}
	cmd.AddCommand(newSecretsCreateCmd(), newSecretsListCmd(), newSecretsUpdateCmd(), newSecretsRotateCmd(),
		newSecretsDeleteCmd(), newSecretsImportCmd(), newSecretsAttachCmd(true), newSecretsAttachCmd(false))
	return cmd
}

func newSecretsCreateCmd() *cobra.Command {
	var name, value, valueFile string
	var aliases []string
	var sf scopeFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --name NAME [--value-file F|-]",
		Short: "Store a secret; a known name (OPENAI_API_KEY, …) provisions its provider",
		Long: `Store a secret. The value comes from a no-echo prompt on a terminal, from
stdin when piped, or from --value-file. --value works but warns: command lines
are visible to other users through ps.

A canonical name from the registry (OPENAI_API_KEY, GITHUB_TOKEN, …) pins the
secret to its provider and makes that provider's capabilities ready.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			if name == "" {
				return usagef("--name is required")
			}
			v, err := readValue(cc, value, cmd.Flags().Changed("value"), valueFile, "value")
			if err != nil {
				return err
			}
			defer clear(v)
			var res secretsCreateResult
			if err := callOp(cc, modeOperator, "secrets.create", secretsCreateArgs{Name: name, Value: v, Scope: sf.scope, WorkspaceID: sf.workspace, GroupID: sf.group, Aliases: aliases}, &res); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cc.stdout, map[string]any{"secretId": res.Secret.ID, "secret": res.Secret, "provision": res.Provision})
			}
			fmt.Fprintf(cc.stdout, "stored secret %s (%s, %s scope)\n", res.Secret.Name, res.Secret.ID, res.Secret.Scope)
			printProvision(cc.stdout, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "secret name (canonical names such as OPENAI_API_KEY provision their provider)")
	f.StringVar(&value, "value", "", "the value (visible in ps; prefer the prompt, --value-file or stdin)")
	f.StringVar(&valueFile, "value-file", "", "read the value from this file ('-' for stdin)")
	f.StringArrayVar(&aliases, "alias", nil, "alternative name (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print the created record's metadata as JSON")
	sf.add(cmd, true)
	return cmd
}

func printProvision(w io.Writer, res secretsCreateResult) {
	p := res.Provision
	if p == nil {
		return
	}
	if p.Ready {
		fmt.Fprintf(w, "pinned to provider %s; credential %s is ready with %d capabilities ('aivault capability list')\n", p.Provider, p.Credential, p.Capabilities)
	} else if len(p.Missing) > 0 {
		fmt.Fprintf(w, "pinned to provider %s; still missing: %s (store it to make %s ready)\n", p.Provider, strings.Join(p.Missing, ", "), p.Provider)
	} else if p.Hint != "" {
		fmt.Fprintf(w, "pinned to provider %s; %s\n", p.Provider, p.Hint)
	}
}

func newSecretsListCmd() *cobra.Command {
	var sf scopeFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List secrets (metadata only: id, name, aliases, scope, pinned provider, timestamps)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var out []crypt.SecretMeta
			if err := callOp(cc, modeOperator, "secrets.list", secretsListArgs{Scope: sf.scope, WorkspaceID: sf.workspace, GroupID: sf.group}, &out); err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []crypt.SecretMeta{}
				}
				return printJSON(cc.stdout, out)
			}
			tw := tabwriter.NewWriter(cc.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSCOPE\tPINNED\tVERSION\tUPDATED")
			for _, m := range out {
				sc := m.Scope
				if m.WorkspaceID != "" {
					sc += ":" + m.WorkspaceID
				}
				if m.GroupID != "" {
					sc += "/" + m.GroupID
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.Name, sc, dash(m.Pinned), m.ValueVersion, m.UpdatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&asJSON, "json", "v", false, "print JSON")
	sf.add(cmd, true)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newSecretsUpdateCmd() *cobra.Command {
	var rf refFlags
	var newName string
	var aliases []string
	var clearAliases bool
	cmd := &cobra.Command{
		Use:   "update --id ID|--name N [--new-name N] [--alias A]... [--clear-aliases]",
		Short: "Rename a secret or change its aliases (not its value: see rotate)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			ref, err := rf.ref()
			if err != nil {
				return err
			}
			var out crypt.SecretMeta
			if err := callOp(cc, modeOperator, "secrets.update", secretsUpdateArgs{secretRef: ref, NewName: newName, Aliases: aliases, ClearAliases: clearAliases}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "updated secret %s (%s)\n", out.Name, out.ID)
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&newName, "new-name", "", "new name")
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "add an alias (repeatable)")
	cmd.Flags().BoolVar(&clearAliases, "clear-aliases", false, "remove all aliases first")
	return cmd
}

func newSecretsRotateCmd() *cobra.Command {
	var rf refFlags
	var value, valueFile string
	cmd := &cobra.Command{
		Use:   "rotate --id ID|--name N [--value-file F|-]",
		Short: "Replace a secret's value (with a fresh data key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			ref, err := rf.ref()
			if err != nil {
				return err
			}
			v, err := readValue(cc, value, cmd.Flags().Changed("value"), valueFile, "value")
			if err != nil {
				return err
			}
			defer clear(v)
			var out crypt.SecretMeta
			if err := callOp(cc, modeOperator, "secrets.rotate", secretsRotateArgs{secretRef: ref, Value: v}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "rotated secret %s (%s), value version %d\n", out.Name, out.ID, out.ValueVersion)
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&value, "value", "", "the new value (visible in ps; prefer the prompt, --value-file or stdin)")
	cmd.Flags().StringVar(&valueFile, "value-file", "", "read the new value from this file ('-' for stdin)")
	return cmd
}

func newSecretsDeleteCmd() *cobra.Command {
	var rf refFlags
	cmd := &cobra.Command{
		Use:   "delete --id ID|--name N",
		Short: "Delete a secret and what depends on it (credentials, bindings)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			ref, err := rf.ref()
			if err != nil {
				return err
			}
			var out map[string]any
			if err := callOp(cc, modeOperator, "secrets.delete", ref, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "deleted secret %v (%v)\n", out["name"], out["deleted"])
			return nil
		},
	}
	rf.add(cmd)
	return cmd
}

// dotenvLine is compiled on first use: package inits run in every process
// (each worker, each CLI call), and only `import --env-file` needs it.
var dotenvLine = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$`)
})

// parseDotenv reads KEY=VALUE lines (comments, blank lines, export prefixes,
// single/double quotes). Values are returned as bytes for wiping.
func parseDotenv(r io.Reader) ([]secretsCreateArgs, error) {
	var out []secretsCreateArgs
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for s.Scan() {
		n++
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := dotenvLine().FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d is not KEY=VALUE", n)
		}
		v := strings.TrimSpace(m[2])
		switch {
		case len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\''):
			v = v[1 : len(v)-1]
		default:
			if i := strings.Index(v, " #"); i >= 0 {
				v = strings.TrimSpace(v[:i])
			}
		}
		if v == "" {
			return nil, fmt.Errorf("line %d (%s) has an empty value", n, m[1])
		}
		out = append(out, secretsCreateArgs{Name: m[1], Value: []byte(v)})
	}
	return out, s.Err()
}

func newSecretsImportCmd() *cobra.Command {
	var entries []string
	var envFile string
	var sf scopeFlags
	cmd := &cobra.Command{
		Use:   "import --entry K=V... | --env-file F",
		Short: "Import several secrets, e.g. from a .env file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			var items []secretsCreateArgs
			if len(entries) > 0 {
				cc.warnf(psWarning, "--entry", "env")
				for _, e := range entries {
					k, v, ok := strings.Cut(e, "=")
					if !ok || k == "" || v == "" {
						return usagef("--entry takes NAME=VALUE")
					}
					items = append(items, secretsCreateArgs{Name: k, Value: []byte(v)})
				}
			}
			if envFile != "" {
				var r io.Reader = cc.stdin
				if envFile != "-" {
					f, err := os.Open(envFile)
					if err != nil {
						return fmt.Errorf("--env-file: %w", err)
					}
					defer f.Close()
					r = f
				}
				more, err := parseDotenv(r)
				if err != nil {
					return fmt.Errorf("--env-file %s: %w", envFile, err)
				}
				items = append(items, more...)
			}
			if len(items) == 0 {
				return usagef("give --entry NAME=VALUE or --env-file FILE")
			}
			defer func() {
				for _, it := range items {
					clear(it.Value)
				}
			}()
			ex, err := cc.openExec(modeOperator)
			if err != nil {
				return err
			}
			defer ex.close()
			var out []secretsCreateResult
			err = ex.call("secrets.import", secretsImportArgs{Entries: items, Scope: sf.scope, WorkspaceID: sf.workspace, GroupID: sf.group}, &out)
			for _, r := range out {
				fmt.Fprintf(cc.stdout, "stored secret %s (%s)\n", r.Secret.Name, r.Secret.ID)
				printProvision(cc.stdout, r)
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&entries, "entry", nil, "NAME=VALUE (repeatable; visible in ps)")
	cmd.Flags().StringVar(&envFile, "env-file", "", "a dotenv file ('-' for stdin)")
	sf.add(cmd, true)
	return cmd
}

func newSecretsAttachCmd(attach bool) *cobra.Command {
	var rf refFlags
	var ws, grp string
	use, short := "attach-group", "Make a secret usable from a group context"
	if !attach {
		use, short = "detach-group", "Undo attach-group"
	}
	cmd := &cobra.Command{
		Use:   use + " --id ID|--name N --workspace-id W --group-id G",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			ref, err := rf.ref()
			if err != nil {
				return err
			}
			ex, err := cc.openExec(modeOperator)
			if err != nil {
				return err
			}
			defer ex.close()
			op := "secrets.attach"
			if !attach {
				op = "secrets.detach"
			}
			if err := ex.call(op, attachArgs{secretRef: ref, AttachWorkspace: ws, AttachGroup: grp}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "%s: %s %s/%s\n", use, dash(ref.Name+ref.ID), ws, grp)
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVar(&ws, "workspace-id", "", "workspace of the group")
	cmd.Flags().StringVar(&grp, "group-id", "", "group")
	return cmd
}
