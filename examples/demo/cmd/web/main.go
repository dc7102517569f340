// Command web serves a greeting and a file from its kodata directory.
package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"example.com/kodev-demo/internal/greeting"
)

// goVersion is set at link time from .ko.yaml's ldflags template.
var goVersion = "unknown"

func motd() string {
	data, err := os.ReadFile(filepath.Join(os.Getenv("KO_DATA_PATH"), "motd.txt"))
	if err != nil {
		return "no motd: " + err.Error()
	}
	return strings.TrimSpace(string(data))
}

func main() {
	fmt.Println(greeting.Message("web"))
	fmt.Println("motd:", motd())
	fmt.Printf("uid: %d\n", os.Getuid())
	fmt.Println("built with:", goVersion)
	if len(os.Args) > 1 && os.Args[1] == "--once" {
		return
	}
	addr := ":8080"
	if port := os.Getenv("PORT"); port != "" {
		addr = ":" + port
	}
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, greeting.Message("web"), "-", motd())
	})
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
