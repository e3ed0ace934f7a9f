package crypt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testState struct {
	Policies map[string]int `json:"policies"`
	Note     string         `json:"note"`
}

func TestStateRoundTrip(t *testing.T) {
	v, k := newFileVault(t, Options{})
	var got testState
	err := v.LoadState(k, "broker", &got)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadState of a missing file: %v, want fs.ErrNotExist", err)
	}
	want := testState{Policies: map[string]int{"openai/*": 60}, Note: "<b>&</b> ünïcode"}
	if err := v.SaveState(k, "broker.json", want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(v.Paths().Dir, "broker.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("broker.json: %v %v", err, st)
	}
	if err := v.LoadState(k, "broker", &got); err != nil {
		t.Fatal(err)
	}
	if got.Note != want.Note || got.Policies["openai/*"] != 60 {
		t.Fatalf("LoadState = %+v", got)
	}
	// Re-indenting the file is not tampering.
	path := filepath.Join(v.Paths().Dir, "broker.json")
	data, _ := os.ReadFile(path)
	var raw map[string]json.RawMessage
	json.Unmarshal(data, &raw)
	flat, _ := json.Marshal(raw)
	os.WriteFile(path, flat, 0o600)
	if err := v.LoadState(k, "broker", &got); err != nil {
		t.Fatalf("LoadState after re-formatting: %v", err)
	}
	mustVerify(t, v, k)

	for _, bad := range []string{"", "vault", "../x", "Broker", "a/b", strings.Repeat("a", 65)} {
		if err := v.SaveState(k, bad, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("SaveState(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

func TestStateTampered(t *testing.T) {
	tests := []struct {
		name string
		edit func(m map[string]any)
		raw  []byte
	}{
		{"edit body", func(m map[string]any) { m["body"].(map[string]any)["note"] = "evil" }, nil},
		{"add policy", func(m map[string]any) { m["body"].(map[string]any)["policies"].(map[string]any)["x"] = 1 }, nil},
		{"drop macs", func(m map[string]any) { delete(m, "macs") }, nil},
		{"empty macs", func(m map[string]any) { m["macs"] = []any{} }, nil},
		{"flip mac", func(m map[string]any) {
			w := m["macs"].([]any)[0].(map[string]any)
			b, _ := base64.StdEncoding.DecodeString(w["mac"].(string))
			b[0] ^= 1
			w["mac"] = base64.StdEncoding.EncodeToString(b)
		}, nil},
		{"other kek id", func(m map[string]any) {
			m["macs"].([]any)[0].(map[string]any)["kekId"] = "kek_00000000000000000000000000000000"
		}, nil},
		{"renamed from another state", func(m map[string]any) { m["name"] = "rates" }, nil},
		{"not json", nil, []byte("{")},
		{"plain json", nil, []byte(`{"policies":{}}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, k := newFileVault(t, Options{})
			if err := v.SaveState(k, "broker", testState{Policies: map[string]int{"a": 1}, Note: "n"}); err != nil {
				t.Fatal(err)
			}
			// A successful load first: LoadState remembers the bytes it
			// verified, and that must never hide a later edit.
			var before testState
			if err := v.LoadState(k, "broker", &before); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(v.Paths().Dir, "broker.json")
			data := tc.raw
			if data == nil {
				old, _ := os.ReadFile(path)
				var m map[string]any
				json.Unmarshal(old, &m)
				tc.edit(m)
				data, _ = json.Marshal(m)
			}
			os.WriteFile(path, data, 0o600)
			var got testState
			err := v.LoadState(k, "broker", &got)
			if !errors.Is(err, ErrStateTampered) {
				t.Fatalf("LoadState: %v, want ErrStateTampered", err)
			}
			if !strings.Contains(err.Error(), "broker.json was modified without the vault key") || !strings.Contains(err.Error(), "remove it to reset policy") {
				t.Fatalf("unhelpful message: %v", err)
			}
		})
	}
}

func TestStateMACBoundToName(t *testing.T) {
	// A valid file copied to another state name does not verify there.
	v, k := newFileVault(t, Options{})
	if err := v.SaveState(k, "rates", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(v.Paths().Dir, "rates.json"))
	os.WriteFile(filepath.Join(v.Paths().Dir, "broker.json"), []byte(strings.Replace(string(data), `"rates"`, `"broker"`, 1)), 0o600)
	var got map[string]int
	if err := v.LoadState(k, "broker", &got); !errors.Is(err, ErrStateTampered) {
		t.Fatalf("LoadState of a copied file: %v", err)
	}
	probs, err := v.Verify(k)
	if err != nil || len(probs) != 1 || probs[0].ID != "broker" {
		t.Fatalf("Verify = %+v, %v", probs, err)
	}
}
