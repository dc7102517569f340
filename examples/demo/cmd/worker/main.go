// Command worker prints a greeting on a timer.
package main

import (
	"fmt"
	"os"
	"time"

	"example.com/kodev-demo/internal/greeting"
)

func main() {
	fmt.Println(greeting.Message("worker"))
	if len(os.Args) > 1 && os.Args[1] == "--once" {
		return
	}
	for tick := 1; ; tick++ {
		time.Sleep(5 * time.Second)
		fmt.Printf("%s: tick %d\n", greeting.Message("worker"), tick)
	}
}
