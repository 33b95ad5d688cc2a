package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	// The directives the golden files use beside otpgate (basic_auth,
	// forward_auth, rewrite, reverse_proxy...).
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// update rewrites the expected JSON of the golden files from what the
// adapter produces now: go test -run TestCaddyfileAdapt ./caddymodule -update
// Read the diff before committing it.
var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/caddyfile_adapt")

// goldenSeparator splits a .caddyfiletest file into the Caddyfile and
// what adapting it gives: JSON, or (for a Caddyfile that must be refused)
// text the error must contain. The format is Caddy's own
// (caddytest/integration/caddyfile_adapt).
const goldenSeparator = "\n----------\n"

// adaptCaddyfile adapts src as "caddy adapt" does and indents the JSON
// with tabs, as the golden files hold it.
func adaptCaddyfile(t *testing.T, src []byte, filename string) ([]byte, error) {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": filename})
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		t.Errorf("%s: warnings: %v", filename, warnings)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, out, "", "\t"); err != nil {
		t.Fatalf("%s: indenting: %v", filename, err)
	}
	return append(b.Bytes(), '\n'), nil
}

// Each golden file's Caddyfile adapts to exactly its JSON (or is refused
// with its error), and Caddyfile.example adapts to
// caddyfile_example.json. A change to the directive's syntax, its JSON
// or its place among Caddy's directives shows here as a diff.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			src, want, ok := strings.Cut(string(data), goldenSeparator)
			if !ok {
				t.Fatalf("no %q line between the Caddyfile and the JSON", strings.TrimSpace(goldenSeparator))
			}
			// The separator took the Caddyfile's last line break.
			got, err := adaptCaddyfile(t, []byte(src+"\n"), "Caddyfile")
			if !strings.HasPrefix(want, "{") {
				if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) {
					t.Fatalf("adapting: %v; want an error containing %q", err, strings.TrimSpace(want))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, file, src+goldenSeparator, got, []byte(want))
		})
	}
	t.Run("Caddyfile.example", func(t *testing.T) {
		src, err := os.ReadFile("../Caddyfile.example")
		if err != nil {
			t.Fatal(err)
		}
		got, err := adaptCaddyfile(t, src, "Caddyfile.example")
		if err != nil {
			t.Fatal(err)
		}
		golden := "testdata/caddyfile_adapt/caddyfile_example.json"
		want, err := os.ReadFile(golden)
		if err != nil && !*update {
			t.Fatal(err)
		}
		compareGolden(t, golden, "", got, want)
	})
}

// compareGolden fails when got differs from want, naming the first line
// that differs, or with -update writes prefix and got to file.
func compareGolden(t *testing.T, file, prefix string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if *update {
		if err := os.WriteFile(file, append([]byte(prefix), got...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", file)
		return
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("%s: line %d of the JSON is\n\t%s\nwant\n\t%s\n(go test -run TestCaddyfileAdapt ./caddymodule -update rewrites the file; read the diff)", file, i+1, gl, wl)
		}
	}
}

// The directive orders itself with no "order" line: after rewrite,
// basic_auth and forward_auth, so that it reads the path the bank will
// read and the identity they set, and before reverse_proxy, which it
// guards (DESIGN.md). The golden file's JSON lists the handlers in the
// order they run.
func TestDirectiveOrder(t *testing.T) {
	data, err := os.ReadFile("testdata/caddyfile_adapt/directive_order.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	src, _, _ := strings.Cut(string(data), goldenSeparator)
	out, err := adaptCaddyfile(t, []byte(src+"\n"), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, h := range adaptedHandlers(t, out) {
		order = append(order, h.name)
	}
	want := []string{"rewrite", "authentication", "forward_auth", "otpgate", "reverse_proxy"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("handlers run in the order %v; want %v", order, want)
	}
}

// adaptedHandler is one HTTP handler of an adapted configuration: its
// name (forward_auth, a reverse_proxy with handle_response, named as such)
// and its JSON.
type adaptedHandler struct {
	name string
	raw  json.RawMessage
}

// adaptedHandlers lists the HTTP handlers of out, an adapted
// configuration, in the order they run, descending into subroutes.
func adaptedHandlers(t *testing.T, out []byte) []adaptedHandler {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []json.RawMessage `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var all []adaptedHandler
	for _, srv := range cfg.Apps.HTTP.Servers {
		all = append(all, routeHandlers(t, srv.Routes)...)
	}
	return all
}

func routeHandlers(t *testing.T, routes []json.RawMessage) []adaptedHandler {
	t.Helper()
	var all []adaptedHandler
	for _, raw := range routes {
		var route struct {
			Handle []json.RawMessage `json:"handle"`
		}
		if err := json.Unmarshal(raw, &route); err != nil {
			t.Fatal(err)
		}
		for _, h := range route.Handle {
			var head struct {
				Handler        string            `json:"handler"`
				Routes         []json.RawMessage `json:"routes"`
				HandleResponse json.RawMessage   `json:"handle_response"`
			}
			if err := json.Unmarshal(h, &head); err != nil {
				t.Fatal(err)
			}
			switch {
			case head.Handler == "subroute":
				all = append(all, routeHandlers(t, head.Routes)...)
			case head.Handler == "reverse_proxy" && head.HandleResponse != nil:
				all = append(all, adaptedHandler{"forward_auth", h})
			default:
				all = append(all, adaptedHandler{head.Handler, h})
			}
		}
	}
	return all
}
