package main

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Image serving. An image is read from the database and sent in chunks, never whole: a
// response holds one chunk in memory, and at most maxImageStreams responses are sent at once,
// at most maxImageStreamsPerAddr per client address. A client that does not take a chunk
// within imageChunkWriteTimeout is cut off, so a slow reader holds its stream for a bounded
// time. A request that finds no stream free is answered 503 with Retry-After at once.
const (
	// imageChunkBytes is how much of an image is read from the database, and held, at a time:
	// just under 256 KiB, so that the database's message for it (the chunk and a few bytes of
	// framing) fits the driver's 256 KiB receive buffer rather than a 512 KiB one.
	imageChunkBytes = 256<<10 - 64
	// maxImageStreams is how many images are sent at once.
	maxImageStreams = 32
	// maxImageStreamsPerAddr is how many of them one client address may take.
	maxImageStreamsPerAddr = 4
	// imageChunkWriteTimeout is how long a client has to take each chunk (256 KiB in 10 s is
	// 25 KiB/s, a slow mobile link).
	imageChunkWriteTimeout = 10 * time.Second
	// imageMemoryBound bounds the memory images take while they are sent: per stream, its
	// chunk and, while a chunk is read, the database driver's copy of it. 16 MiB.
	imageMemoryBound = maxImageStreams * 2 * (256 << 10)
)

// streams counts the image responses in flight, in all and per client address. It is safe
// for concurrent use.
type streams struct {
	mu      sync.Mutex
	total   int
	max     int
	perAddr int
	byAddr  map[string]int
}

func newStreams(max, perAddr int) *streams {
	return &streams{max: max, perAddr: perAddr, byAddr: map[string]int{}}
}

// acquire takes a stream for addr, and reports whether there was one; the caller then calls
// release.
func (s *streams) acquire(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.max || s.byAddr[addr] >= s.perAddr {
		return false
	}
	s.total++
	s.byAddr[addr]++
	return true
}

func (s *streams) release(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byAddr[addr]--; s.byAddr[addr] <= 0 {
		delete(s.byAddr, addr)
	}
}

// chunkBuffers holds the chunk buffers of image responses, for reuse.
var chunkBuffers = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, imageChunkBytes)} }}

// chunk is a part of an image, scanned from the database into a buffer that is reused
// (pgtype.BytesScanner).
type chunk struct{ b []byte }

// ScanBytes implements pgtype.BytesScanner: it copies v, which pgx reuses.
func (c *chunk) ScanBytes(v []byte) error {
	c.b = append(c.b[:0], v...)
	return nil
}

// sendImage writes the size bytes of image id, read chunk by chunk, to w, whose headers are
// set. It stops at the first failure: the headers are gone by then, so the client sees a
// response cut short, which its Content-Length shows.
func (s *server) sendImage(ctx context.Context, w http.ResponseWriter, r *http.Request, k *kind, id int64, size int) {
	c := chunkBuffers.Get().(*chunk)
	defer chunkBuffers.Put(c)
	rc := http.NewResponseController(w)
	end := time.Now().Add(writeTimeout) // the whole answer's bound, which the chunks' deadlines replace
	for off := 0; off < size; off += len(c.b) {
		if err := s.store.imageChunk(ctx, k, id, off, min(imageChunkBytes, size-off), c); err != nil {
			if off == 0 {
				s.readError(w, r, k, err)
				return
			}
			s.log.Warn("docapi: image cut short", "request_id", requestID(ctx), "path", r.URL.Path, "offset", off, "err", err)
			return
		}
		if len(c.b) == 0 {
			s.log.Warn("docapi: image shorter than its size", "request_id", requestID(ctx), "path", r.URL.Path, "offset", off)
			return
		}
		if off == 0 {
			w.WriteHeader(http.StatusOK)
		}
		deadline := time.Now().Add(imageChunkWriteTimeout)
		if deadline.After(end) {
			deadline = end
		}
		rc.SetWriteDeadline(deadline)
		if _, err := w.Write(c.b); err != nil {
			return // the client is gone, or too slow
		}
	}
}
