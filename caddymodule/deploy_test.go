package caddymodule

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// metricRef finds the otpgate series an expression names.
var metricRef = regexp.MustCompile(`caddy_otpgate_[a-z0-9_]+`)

// checkRefs reports each series text names that is no metric family of
// the gateway's (a histogram's _bucket, _sum and _count are its family's).
func checkRefs(t *testing.T, what, text string) {
	t.Helper()
	families := metricFamilies(t)
	refs := metricRef.FindAllString(text, -1)
	if len(refs) == 0 {
		t.Errorf("%s names no otpgate metric", what)
	}
	for _, ref := range refs {
		name := ref
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(ref, suffix); ok && slices.Contains(families, base) {
				name = base
			}
		}
		if !slices.Contains(families, name) {
			t.Errorf("%s names %s, which the gateway does not export", what, ref)
		}
	}
}

// The Grafana dashboard is valid JSON, every panel queries Prometheus, and
// it uses only metrics the gateway exports; so do the alerting rules
// (which CI also checks with promtool).
func TestDeployKitNamesExistingMetrics(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/otpgate-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard without uid, title or panels: %q %q %d", dash.UID, dash.Title, len(dash.Panels))
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, q := range p.Targets {
			checkRefs(t, "panel "+p.Title, q.Expr)
		}
	}
	rules, err := os.ReadFile("../deploy/prometheus/otpgate-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	checkRefs(t, "otpgate-rules.yml", string(rules))
}
