package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/http"
	"sync"
	"testing"
)

// pngHeader returns a PNG that declares width x height pixels and holds no pixel data.
func pngHeader(width, height uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, width)
	ihdr = binary.BigEndian.AppendUint32(ihdr, height)
	ihdr = append(ihdr, 8, 0, 0, 0, 0) // 8-bit greyscale
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestCheckDimensions(t *testing.T) {
	tests := []struct {
		name string
		img  []byte
		ok   bool
	}{
		{"a small PNG", pngImage(t, 1), true},
		{"a JPEG", jpegImage(t), true},
		{"a PDF", pdfDocument, true},
		{"an A4 scan at 300 dpi", pngHeader(2480, 3508), true},
		{"2^31-1 x 2^31-1", pngHeader(1<<31-1, 1<<31-1), false},
		{"too wide", pngHeader(maxImageSide+1, 10), false},
		{"too many pixels", pngHeader(maxImageSide, maxImageSide), false},
		{"a PNG cut short", pngImage(t, 1)[:20], false},
	}
	for _, tt := range tests {
		herr := checkDimensions(tt.img)
		if (herr == nil) != tt.ok {
			t.Errorf("%s: %v, want accepted %v", tt.name, herr, tt.ok)
		}
		if herr != nil && herr.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", tt.name, herr.status)
		}
	}
}

// TestUploadRefusesHugeDimensions: the PNG of issue 26, which declares 2^31-1 pixels a side,
// is refused, not stored.
func TestUploadRefusesHugeDimensions(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if status, doc := a.upload(permis, validForm(permis), pngHeader(1<<31-1, 1<<31-1), "huge"); status != http.StatusBadRequest {
		t.Errorf("upload: %d %v, want 400", status, doc)
	}
}

// A user's images take at most the upload quota, however many uploads race for the last room,
// and a client's retry of an upload already stored is still answered.
func TestUploadQuota(t *testing.T) {
	t.Parallel()
	img := append(pngHeader(10, 10), make([]byte, 100<<10)...) // 100 KiB
	a := newAPI(t, withUploadQuota(int64(2*len(img)+len(img)/2)))
	if status, doc := a.upload(permis, validForm(permis), img, "first"); status != http.StatusCreated {
		t.Fatalf("first upload: %d %v", status, doc)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			status, _ := a.upload(permis, validForm(permis), img, fmt.Sprintf("race-%d", i))
			mu.Lock()
			codes[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusCreated] != 1 || codes[http.StatusForbidden] != 7 {
		t.Fatalf("8 uploads racing for room for one: %v, want 1 created and 7 forbidden", codes)
	}
	if status, doc := a.upload(permis, validForm(permis), img, "first"); status != http.StatusOK {
		t.Fatalf("the retry of a stored upload at the quota: %d %v, want 200", status, doc)
	}
}
