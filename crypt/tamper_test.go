package crypt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// editRecord rewrites a record file through a JSON map.
func editRecord(t *testing.T, v *Vault, id string, edit func(m map[string]any)) {
	t.Helper()
	path := v.recordPath(id)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, _ := json.Marshal(m)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipB64(s string, at int) string {
	b, _ := base64.StdEncoding.DecodeString(s)
	if at < 0 {
		at = len(b) + at
	}
	b[at] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

func TestTamperedRecords(t *testing.T) {
	values := []string{"value-A-secret", "value-B-secret"}
	tests := []struct {
		name string
		edit func(t *testing.T, v *Vault, a, b string)
	}{
		{"flip value byte", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["value"] = flipB64(m["value"].(string), -1) })
		}},
		{"flip value nonce", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["value"] = flipB64(m["value"].(string), 0) })
		}},
		{"flip wrapped dek", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) {
				w := m["wraps"].([]any)[0].(map[string]any)
				w["dek"] = flipB64(w["dek"].(string), 30)
			})
		}},
		{"swap values", func(t *testing.T, v *Vault, a, b string) {
			var bv any
			editRecord(t, v, b, func(m map[string]any) { bv = m["value"] })
			editRecord(t, v, a, func(m map[string]any) { m["value"] = bv })
		}},
		{"swap value and wrap", func(t *testing.T, v *Vault, a, b string) {
			var bv, bw any
			editRecord(t, v, b, func(m map[string]any) { bv, bw = m["value"], m["wraps"] })
			editRecord(t, v, a, func(m map[string]any) { m["value"], m["wraps"] = bv, bw })
		}},
		{"copy whole record under another id", func(t *testing.T, v *Vault, a, b string) {
			data, _ := os.ReadFile(v.recordPath(b))
			os.WriteFile(v.recordPath(a), data, 0o600)
		}},
		{"copy record with its id rewritten", func(t *testing.T, v *Vault, a, b string) {
			data, _ := os.ReadFile(v.recordPath(b))
			os.WriteFile(v.recordPath(a), []byte(strings.ReplaceAll(string(data), b, a)), 0o600)
		}},
		{"edit scope", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["scope"] = "workspace"; m["workspaceId"] = "w9" })
		}},
		{"edit group", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["groupId"] = "g2" })
		}},
		{"re-pin", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["pinned"] = "evil" })
		}},
		{"unpin", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { delete(m, "pinned") })
		}},
		{"future version", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["version"] = 2 })
		}},
		{"truncated", func(t *testing.T, v *Vault, a, b string) {
			data, _ := os.ReadFile(v.recordPath(a))
			os.WriteFile(v.recordPath(a), data[:len(data)/2], 0o600)
		}},
		{"unknown field", func(t *testing.T, v *Vault, a, b string) {
			editRecord(t, v, a, func(m map[string]any) { m["plaintext"] = "x" })
		}},
		{"symlink", func(t *testing.T, v *Vault, a, b string) {
			os.Remove(v.recordPath(a))
			os.Symlink(v.recordPath(b), v.recordPath(a))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, k := newFileVault(t, Options{})
			a := mustCreate(t, v, k, SecretMeta{Name: "A", Pinned: "openai"}, values[0]).ID
			b := mustCreate(t, v, k, SecretMeta{Name: "B", Pinned: "openai"}, values[1]).ID
			// Read both first: the vault remembers what it parsed, and that
			// must never hide a later edit.
			mustOpen(t, v, k, a, values[0])
			if _, err := v.ListSecrets(); err != nil {
				t.Fatal(err)
			}
			tc.edit(t, v, a, b)

			_, err := v.OpenSecret(k, a)
			var te *TamperedError
			if !errors.Is(err, ErrTampered) || !errors.As(err, &te) {
				t.Fatalf("OpenSecret: %v, want ErrTampered", err)
			}
			if te.ID != a || !strings.Contains(err.Error(), a) || te.File != v.recordPath(a) {
				t.Fatalf("error does not name record %s: %v", a, err)
			}
			noLeak(t, err.Error(), values...)
			mustOpen(t, v, k, b, values[1])

			probs, err := v.Verify(k)
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) == 0 {
				t.Fatal("Verify found nothing")
			}
			for _, p := range probs {
				if p.ID != a && !strings.Contains(p.Problem, a) {
					t.Fatalf("Verify problems %+v, want only record %s", probs, a)
				}
				noLeak(t, p.Problem, values...)
			}
			// A record whose binding was tampered with is never re-sealed by
			// a rotation; one with a corrupt value may get a new value, but
			// only under its original scope and pin.
			m, err := v.RotateSecret(k, a, []byte("new"))
			if err == nil {
				if m.Scope != DefaultScope || m.WorkspaceID != "" || m.GroupID != "" || m.Pinned != "openai" {
					t.Fatalf("RotateSecret re-sealed tampered metadata: %+v", m)
				}
				mustOpen(t, v, k, a, "new")
			} else if !errors.Is(err, ErrTampered) {
				t.Fatalf("RotateSecret of a tampered record: %v", err)
			}
		})
	}
}

func TestStrayFilesInSecretsDir(t *testing.T) {
	v, k := newFileVault(t, Options{})
	mustCreate(t, v, k, SecretMeta{Name: "A"}, "a")
	os.WriteFile(filepath.Join(v.secretsDir(), "notes.txt"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(v.secretsDir(), tempPrefix+"sec_x.json-1"), []byte("x"), 0o600)
	list, err := v.ListSecrets()
	if err != nil || len(list) != 1 {
		t.Fatalf("ListSecrets = %d, %v", len(list), err)
	}
	probs, err := v.Verify(k)
	if err != nil || len(probs) != 1 || !strings.Contains(probs[0].File, "notes.txt") {
		t.Fatalf("Verify = %+v, %v", probs, err)
	}
}
