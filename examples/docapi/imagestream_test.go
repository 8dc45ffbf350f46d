package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// liveHeap returns the bytes of live heap objects, after a garbage collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// residentKiB returns the process's resident set and its peak (VmRSS, VmHWM), in KiB.
func residentKiB() (rss, peak int) {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		name, v, _ := strings.Cut(line, ":")
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch name {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	return rss, peak
}

// slowReader asks for path on a connection of its own, as the client from, reads the answer's
// status line and headers, and then reads nothing more: the server's writes block once the
// socket buffers are full. It returns the open connection and the status.
func slowReader(t *testing.T, base, path, token, from string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: docapi\r\nAuthorization: Bearer %s\r\nX-Forwarded-For: %s\r\n\r\n", path, token, from)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1<<10), nil)
	if err != nil {
		c.Close()
		t.Fatalf("slow reader %s: %v", from, err)
	}
	return c, resp.StatusCode
}

// TestImageMemoryUnderSlowReaders stores a 5 MiB image and has 60 clients ask for it and then
// stop reading. It measures the live heap (after a garbage collection) while they stall, and
// checks that it grew by no more than the stated bound on image memory, however many images
// are being sent.
func TestImageMemoryUnderSlowReaders(t *testing.T) {
	a := newAPI(t)
	img := pngImage(t, 1)
	pad := make([]byte, maxImageBytes-len(img))
	rand.Read(pad)
	img = append(img, pad...) // a PNG, then bytes that do not compress
	status, doc := a.upload(permis, validForm(permis), img, "big")
	if status != http.StatusCreated {
		t.Fatalf("upload: %d %v", status, doc)
	}
	path := fmt.Sprintf("/permis/%d/image", id(t, doc))

	const readers = 60
	before := liveHeap()
	_, peakBefore := residentKiB()
	var (
		mu       sync.Mutex
		conns    []net.Conn
		statuses = map[int]int{}
		wg       sync.WaitGroup
	)
	for i := range readers {
		wg.Go(func() {
			c, status := slowReader(t, a.url, path, a.token, fmt.Sprintf("192.0.2.%d", i+1))
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, c)
			statuses[status]++
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// Every reader has its headers: each answer is being written, and stalls.
	during := liveHeap()
	rss, peak := residentKiB()
	grew := int64(during) - int64(before)
	t.Logf("%d slow readers of a %d-byte image: statuses %v; live heap %d -> %d bytes (%+d); resident %d KiB, peak %d -> %d KiB; bound %d bytes",
		readers, len(img), statuses, before, during, grew, rss, peakBefore, peak, imageMemoryBound)
	if statuses[http.StatusOK] == 0 {
		t.Errorf("no reader got the image: %v", statuses)
	}
	for s := range statuses {
		if s != http.StatusOK && s != http.StatusServiceUnavailable {
			t.Errorf("status %d among %v, want only 200 and 503", s, statuses)
		}
	}
	// The bound is on image bytes; the rest (goroutines, connections, buffers of 60 requests)
	// is allowed 8 MiB more.
	if limit := int64(imageMemoryBound) + 8<<20; grew > limit {
		t.Errorf("the live heap grew by %d bytes under %d slow readers, want at most %d", grew, readers, limit)
	}
}

func TestStreamsShareOutSlots(t *testing.T) {
	s := newStreams(3, 2)
	got := []bool{s.acquire("a"), s.acquire("a"), s.acquire("a"), s.acquire("b"), s.acquire("c")}
	want := []bool{true, true, false, true, false} // a's share is 2; then the total, 3
	if !slices.Equal(got, want) {
		t.Fatalf("acquire: %v, want %v", got, want)
	}
	s.release("a")
	if !s.acquire("c") {
		t.Error("a released stream was not taken")
	}
	if s.release("b"); len(s.byAddr) != 2 {
		t.Errorf("addresses kept: %v, want a and c", s.byAddr)
	}
}
