// Package greeting is shared by every binary of the demo, so a change here
// rebuilds both images while a change to one cmd rebuilds only that one.
package greeting

import "fmt"

// Message is what each binary prints when it starts.
func Message(who string) string {
	return fmt.Sprintf("hello from %s", who)
}
