// Command kodev-live is the entrypoint of images built by `kodev up --live`, and the
// receiving end of a live swap. It is built by kodev with the developer's own Go
// toolchain and exists in no other image.
//
//	kodev-live run -- PROGRAM [ARGS...]   (the entrypoint; PID 1 of the container)
//	kodev-live swap [--sha256 HEX --size N --grace SECONDS]   (exec'd by kodev)
//
// run starts PROGRAM as its child with the same arguments, environment and standard
// streams (so its output stays the container's log), forwards SIGTERM and SIGINT to it,
// reaps orphans, and exits as the child exits. When /kodev-live (an emptyDir kodev adds in
// live mode) names a newer binary, that one runs instead: after a swap, and also after a
// restart of the container.
//
// kodata: in a live image /var/run/ko (KO_DATA_PATH) is a symlink to /kodev-live/kodata,
// which run points at the image's copy (/kodev/kodata) and swap at newer kodata.
//
// swap reads exactly N bytes from stdin (the exec stream), checks their sha256, and only
// (without flags, a first line on stdin gives them: "HEX N SECONDS [KHEX KN]", or "abort"
// to change nothing; so kodev can open the exec stream while the binary is still being
// built; KHEX and KN announce a tar of new kodata that follows the binary)
// then writes them into /kodev-live, points `current` at them and sends SIGHUP to PID 1:
// the supervisor stops its child with SIGTERM, waits up to the grace period (then
// SIGKILL), starts the new binary and records it in `status`. A short or corrupted
// transfer changes nothing: the old process keeps running.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const dir = "/kodev-live"

var (
	supervisorFile = filepath.Join(dir, "supervisor") // written by run: live swaps are possible
	kodataLink     = filepath.Join(dir, "kodata")     // what /var/run/ko points at
	imageKodata    = "/kodev/kodata"
	currentFile    = filepath.Join(dir, "current") // "<binary path>\n<grace seconds>\n"
	statusFile     = filepath.Join(dir, "status")  // "<generation> <child pid> <binary path>\n"
)

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: kodev-live run -- PROGRAM [ARGS...] | kodev-live swap --sha256 HEX --size N --grace S")
	}
	switch os.Args[1] {
	case "run":
		args := os.Args[2:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) == 0 {
			fail(2, "run: no program")
		}
		os.Exit(run(args))
	case "swap":
		os.Exit(swap(os.Args[2:]))
	default:
		fail(2, "unknown command "+os.Args[1])
	}
}

func fail(code int, message string) {
	fmt.Fprintln(os.Stderr, "kodev-live:", message)
	os.Exit(code)
}

// ------------------------------------------------------------------ run (PID 1)

type supervisor struct {
	argv       []string
	child      *os.Process
	generation int
	grace      time.Duration
}

func run(argv []string) int {
	s := &supervisor{argv: argv, grace: 30 * time.Second}
	live := os.WriteFile(supervisorFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644) == nil
	if !live {
		// No writable /kodev-live: nothing can be swapped in, so just become the program.
		err := syscall.Exec(argv[0], argv, os.Environ())
		fail(127, fmt.Sprintf("exec %s: %v", argv[0], err))
	}
	if _, err := os.Lstat(kodataLink); err != nil {
		_ = os.Symlink(imageKodata, kodataLink)
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGCHLD)
	if err := s.start(); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live:", err)
		return 127
	}
	stopping := false
	for sig := range signals {
		switch sig {
		case syscall.SIGTERM, syscall.SIGINT:
			stopping = true
			_ = s.child.Signal(sig)
		case syscall.SIGHUP:
			if !stopping {
				s.restart()
			}
		case syscall.SIGCHLD:
			if code, exited := s.reap(); exited {
				return code
			}
		}
	}
	return 0
}

// program is the binary to run: the newest swapped in, else the image's own.
func (s *supervisor) program() string {
	data, err := os.ReadFile(currentFile)
	if err != nil {
		return s.argv[0]
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 1 {
		if seconds, err := strconv.Atoi(lines[1]); err == nil && seconds >= 0 {
			s.grace = time.Duration(seconds) * time.Second
		}
	}
	if _, err := os.Stat(lines[0]); err != nil {
		return s.argv[0]
	}
	return lines[0]
}

func (s *supervisor) start() error {
	path := s.program()
	child, err := os.StartProcess(path, s.argv, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		return fmt.Errorf("start %s: %w", path, err)
	}
	s.child = child
	s.generation++
	status := fmt.Sprintf("%d %d %s\n", s.generation, child.Pid, path)
	tmp := statusFile + ".tmp"
	if os.WriteFile(tmp, []byte(status), 0o644) == nil {
		_ = os.Rename(tmp, statusFile)
	}
	return nil
}

// restart stops the child as a kubelet would stop the container (SIGTERM, the grace
// period, SIGKILL) and starts the current program.
func (s *supervisor) restart() {
	old := s.child
	_ = old.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(s.grace)
	for !s.waitFor(old.Pid, 10*time.Millisecond) {
		if time.Now().After(deadline) {
			_ = old.Kill()
			deadline = time.Now().Add(time.Hour)
		}
	}
	if err := s.start(); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live:", err)
		os.Exit(127)
	}
}

// waitFor reaps children for up to `wait`; true once pid is among them.
func (s *supervisor) waitFor(pid int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if got == pid {
			return true
		}
		if errors.Is(err, syscall.ECHILD) {
			return true
		}
		if got <= 0 {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// reap collects every exited child; when the program itself exited, its exit code.
func (s *supervisor) reap() (int, bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return 0, false
		}
		if pid == s.child.Pid {
			if ws.Signaled() {
				return 128 + int(ws.Signal()), true
			}
			return ws.ExitStatus(), true
		}
	}
}

// ------------------------------------------------------------------ swap (exec'd)

func swap(args []string) int {
	flags := flag.NewFlagSet("swap", flag.ContinueOnError)
	want := flags.String("sha256", "", "sha256 of the new binary (hex)")
	size := flags.Int64("size", -1, "its size in bytes")
	grace := flags.Int("grace", 30, "seconds the old process gets after SIGTERM")
	kodataSHA, kodataSize := "", int64(-1)
	if err := flags.Parse(args); err != nil {
		return 2
	}
	stdin := bufio.NewReaderSize(os.Stdin, 1<<20)
	if *want == "" {
		header, err := stdin.ReadString('\n')
		fields := strings.Fields(header)
		if err != nil || len(fields) == 0 || fields[0] == "abort" {
			return 0 // nothing to swap: the build changed nothing, or failed
		}
		if len(fields) != 3 && len(fields) != 5 {
			fmt.Fprintln(os.Stderr, "kodev-live: bad header:", strings.TrimSpace(header))
			return 2
		}
		*want = fields[0]
		*size, _ = strconv.ParseInt(fields[1], 10, 64)
		*grace, _ = strconv.Atoi(fields[2])
		if len(fields) == 5 {
			kodataSHA = fields[3]
			kodataSize, _ = strconv.ParseInt(fields[4], 10, 64)
		}
	}
	if len(*want) != 64 || *size < 0 {
		fmt.Fprintln(os.Stderr, "kodev-live: usage: swap --sha256 HEX --size N --grace S")
		return 2
	}
	if _, err := os.Stat(supervisorFile); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live: this container was not started by the live supervisor")
		return 3
	}
	incoming := filepath.Join(dir, fmt.Sprintf(".incoming-%d", os.Getpid()))
	file, err := os.OpenFile(incoming, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o555)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live:", err)
		return 4
	}
	hash := sha256.New()
	copied, err := io.Copy(io.MultiWriter(file, hash), io.LimitReader(stdin, *size))
	closeErr := file.Close()
	got := hex.EncodeToString(hash.Sum(nil))
	switch {
	case err != nil || closeErr != nil || copied != *size:
		os.Remove(incoming)
		fmt.Fprintf(os.Stderr, "kodev-live: transfer cut after %d of %d bytes; nothing changed\n", copied, *size)
		return 5
	case got != *want:
		os.Remove(incoming)
		fmt.Fprintf(os.Stderr, "kodev-live: sha256 %s, expected %s; nothing changed\n", got, *want)
		return 5
	}
	kodata := ""
	if kodataSize >= 0 {
		var code int
		if kodata, code = receiveKodata(stdin, kodataSHA, kodataSize); code != 0 {
			os.Remove(incoming)
			return code
		}
	}
	binary := filepath.Join(dir, "app-"+got[:16])
	if err := os.Rename(incoming, binary); err != nil {
		os.Remove(incoming)
		fmt.Fprintln(os.Stderr, "kodev-live:", err)
		return 4
	}
	if kodata != "" {
		if err := repoint(kodataLink, kodata); err != nil {
			fmt.Fprintln(os.Stderr, "kodev-live: kodata:", err)
			return 4
		}
	}
	before := generation()
	current := fmt.Sprintf("%s\n%d\n", binary, *grace)
	if err := os.WriteFile(currentFile+".tmp", []byte(current), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live:", err)
		return 4
	}
	if err := os.Rename(currentFile+".tmp", currentFile); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live:", err)
		return 4
	}
	removeOthers(binary)
	if err := syscall.Kill(1, syscall.SIGHUP); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live: signal the supervisor:", err)
		return 4
	}
	deadline := time.Now().Add(time.Duration(*grace)*time.Second + 15*time.Second)
	for time.Now().Before(deadline) {
		if generation() > before {
			fmt.Println("swapped", statusLine())
			return 0
		}
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "kodev-live: the supervisor did not restart the program in time")
	return 6
}

// receiveKodata reads a tar of kodata (size bytes, checked against its sha256) and
// unpacks it into its own directory under /kodev-live; nothing is unpacked from a short
// or corrupted transfer.
func receiveKodata(in io.Reader, want string, size int64) (string, int) {
	data, err := io.ReadAll(io.LimitReader(in, size))
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if err != nil || int64(len(data)) != size {
		fmt.Fprintf(os.Stderr, "kodev-live: kodata transfer cut after %d of %d bytes; nothing changed\n", len(data), size)
		return "", 5
	}
	if got != want {
		fmt.Fprintf(os.Stderr, "kodev-live: kodata sha256 %s, expected %s; nothing changed\n", got, want)
		return "", 5
	}
	target := filepath.Join(dir, "kodata-"+got[:16])
	tmp := fmt.Sprintf("%s.tmp-%d", target, os.Getpid())
	if err := untar(data, tmp); err != nil {
		os.RemoveAll(tmp)
		fmt.Fprintln(os.Stderr, "kodev-live: kodata:", err)
		return "", 4
	}
	os.RemoveAll(target)
	if err := os.Rename(tmp, target); err != nil {
		fmt.Fprintln(os.Stderr, "kodev-live: kodata:", err)
		return "", 4
	}
	return target, 0
}

// untar writes the regular files and directories of a tar under root; any other entry,
// or a name that would leave root, is an error.
func untar(data []byte, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	reader := tar.NewReader(bytes.NewReader(data))
	for {
		header, err := reader.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(header.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %q leaves the kodata directory", header.Name)
		}
		path := filepath.Join(root, name)
		switch header.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
			if err != nil {
				return err
			}
			_, err = io.Copy(file, reader)
			if closeErr := file.Close(); err == nil {
				err = closeErr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q is not a file or a directory", header.Name)
		}
	}
}

// repoint atomically makes link (a symlink) point at target, and removes the kodata
// directories it pointed at before (a running process has what it opened).
func repoint(link, target string) error {
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		return err
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "kodata-*"))
	for _, m := range matches {
		if m != target {
			os.RemoveAll(m)
		}
	}
	return nil
}

// removeOthers deletes the binaries swapped in before (a running process keeps its
// file open; the emptyDir should not fill up with old builds).
func removeOthers(keep string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "app-*"))
	for _, m := range matches {
		if m != keep {
			os.Remove(m)
		}
	}
}

func statusLine() string {
	data, _ := os.ReadFile(statusFile)
	return strings.TrimSpace(string(data))
}

func generation() int {
	fields := strings.Fields(statusLine())
	if len(fields) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(fields[0])
	return n
}
