package applets

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/policy"
	"github.com/spf13/cobra"
)

type auditPruneArgs struct {
	MaxAgeMs int64 `json:"maxAgeMs"`
}

// opAuditPrune deletes whole day files older than the retention and leaves a
// signed checkpoint so that the remaining chain still verifies.
func opAuditPrune(_ context.Context, e *engine, p *peer, raw json.RawMessage) (any, error) {
	var a auditPruneArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if a.MaxAgeMs < int64(24*time.Hour/time.Millisecond) {
		return nil, policy.Errorf(policy.ClassInvalidRequest, "--max-age must be at least 24h (audit files are per UTC day)")
	}
	ak, err := e.auditKey()
	if err != nil {
		return nil, err
	}
	defer clear(ak)
	e.auditMu.Lock()
	if e.auditLog != nil {
		_ = e.auditLog.Close()
		e.auditLog = nil
	}
	removed, err := audit.Prune(e.lay.auditDir(), ak, time.Duration(a.MaxAgeMs)*time.Millisecond, e.now())
	e.auditMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("audit prune: %w", err)
	}
	e.record(p, audit.Event{Kind: "audit.prune", Decision: "allow", Detail: map[string]string{"removedFiles": fmt.Sprint(len(removed))}})
	if removed == nil {
		removed = []string{}
	}
	return map[string]any{"removed": removed}, nil
}

func newAuditPruneCmd() *cobra.Command {
	var maxAge time.Duration
	cmd := &cobra.Command{
		Use:   "prune --max-age DURATION",
		Short: "Delete whole day files older than DURATION (e.g. 2160h), keeping the chain verifiable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			if maxAge <= 0 {
				return usagef("--max-age is required (e.g. --max-age 2160h for 90 days)")
			}
			ex, err := cc.openExec(modeOperator)
			if err != nil {
				return err
			}
			defer ex.close()
			var out struct {
				Removed []string `json:"removed"`
			}
			if err := ex.call("audit.prune", auditPruneArgs{MaxAgeMs: maxAge.Milliseconds()}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "pruned %d audit file(s)\n", len(out.Removed))
			return nil
		},
	}
	cmd.Flags().DurationVar(&maxAge, "max-age", 0, "retention")
	return cmd
}
