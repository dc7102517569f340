// Command testapp is the container the test environment's real node runs when a test
// needs a workload that is not built by kodev: it prints what it is told to, answers
// HTTP, and exits when asked, so that log lines, restarts and exit codes in the tests
// come from a real process under a real kubelet, never from the test itself.
//
//	testapp [--say LINE]... [--err LINE]... [--exit CODE] [--answer TEXT] [--listen ADDR]
//
// HTTP (through the API server's pods/proxy or port-forward):
//
//	GET /              the answer (--answer, else $ANSWER, else "testapp")
//	GET /healthz       200
//	GET /say?line=L... prints each L on stdout (stream=stderr: on stderr)
//	GET /exit?code=N   exits with status N after answering
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type lines []string

func (l *lines) String() string     { return strings.Join(*l, ",") }
func (l *lines) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var say, errs lines
	flag.Var(&say, "say", "print LINE on stdout at start (repeatable)")
	flag.Var(&errs, "err", "print LINE on stderr at start (repeatable)")
	exit := flag.Int("exit", -1, "exit with this status right after the start-up lines")
	answer := flag.String("answer", envOr("ANSWER", "testapp"), "what GET / returns")
	listen := flag.String("listen", ":"+envOr("PORT", "8080"), "HTTP listen address")
	flag.Parse()

	for _, l := range say {
		fmt.Fprintln(os.Stdout, l)
	}
	for _, l := range errs {
		fmt.Fprintln(os.Stderr, l)
	}
	if *exit >= 0 {
		os.Exit(*exit)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, *answer) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/say", func(w http.ResponseWriter, r *http.Request) {
		out := os.Stdout
		if r.URL.Query().Get("stream") == "stderr" {
			out = os.Stderr
		}
		for _, l := range r.URL.Query()["line"] {
			fmt.Fprintln(out, l)
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "code must be a number", http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "exiting", code)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(code) }()
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(os.Stdout, "testapp: terminating")
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
