// Binds 127.0.0.1:80 as the image's non-root user: first as exec left it, then after
// raising every permitted capability to effective (what ko's docs ask of a program
// whose file capabilities are permitted only).
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct {
	effective, permitted, inheritable uint32
}

func bind(label string) {
	l, err := net.Listen("tcp", "127.0.0.1:80")
	if err != nil {
		fmt.Printf("%s: %v\n", label, err)
		return
	}
	l.Close()
	fmt.Printf("%s: bound port 80\n", label)
}

func main() {
	runtime.LockOSThread() // capabilities belong to a thread: capset and bind on this one
	start, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	fmt.Printf("uid=%d unprivileged_port_start=%s", os.Getuid(), start)
	header := capHeader{version: 0x20080522} // _LINUX_CAPABILITY_VERSION_3
	var data [2]capData
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&header)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		fmt.Println("capget:", e)
		os.Exit(1)
	}
	fmt.Printf("permitted=%#x effective=%#x\n", data[0].permitted, data[0].effective)
	bind("as started")
	data[0].effective |= data[0].permitted
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&header)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		fmt.Println("capset:", e)
		os.Exit(1)
	}
	bind("raised")
}
