package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestClockComparedOnceWithTheBank(t *testing.T) {
	for _, tc := range []struct {
		name  string
		off   time.Duration // the bank's clock minus the gateway's
		level zapcore.Level
	}{
		{"in step", 0, zapcore.InfoLevel},
		{"a second apart", time.Second, zapcore.InfoLevel},
		{"five minutes behind", -5 * time.Minute, zapcore.ErrorLevel},
		{"an hour ahead", time.Hour, zapcore.ErrorLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			g := &Gateway{logger: zap.New(core), clock: &clockCheck{}}
			date := time.Now().Add(tc.off).UTC().Format(http.TimeFormat)
			for range 3 {
				w := g.watchClock(httptest.NewRecorder())
				w.Header().Set("Date", date)
				w.WriteHeader(http.StatusOK)
			}
			if logs.Len() != 1 {
				t.Fatalf("%d log lines, want one comparison: %v", logs.Len(), logs.All())
			}
			if got := logs.All()[0].Level; got != tc.level {
				t.Errorf("logged at %v, want %v: %s", got, tc.level, logs.All()[0].Message)
			}
		})
	}
}
