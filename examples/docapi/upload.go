package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // image.DecodeConfig of JPEG
	_ "image/png"  // and PNG
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// maxImageBytes is the largest accepted card image: 5 MiB.
	maxImageBytes = 5 << 20
	// maxFormFields bounds the number of form values in an upload.
	maxFormFields = 64
	// maxUploadBytes bounds a whole upload request: the image and the form values.
	maxUploadBytes = maxImageBytes + maxFormFields*(maxFieldBytes+1<<10)
	// maxImageSide is the most pixels on either side of an image: 10,000.
	maxImageSide = 10_000
	// maxImagePixels is the most pixels in an image: 40 million (a 300 dpi A4 scan is 8.7).
	maxImagePixels = 40_000_000
	// maxIdempotencyKey is the longest Idempotency-Key accepted.
	maxIdempotencyKey = 200
)

// allowedImageTypes are the content types, as sniffed by http.DetectContentType, of the images
// docapi stores.
var allowedImageTypes = []string{"image/jpeg", "image/png", "application/pdf"}

// httpError is a client error and the status it is answered with.
type httpError struct {
	status int
	msg    string
}

// process handles POST /{kind}/process: a multipart/form-data upload of the card's image (field
// "image": JPEG, PNG or PDF, at most 5 MiB) and its fields as form values. It answers 201 and
// the document, or 200 and the document stored earlier under the same Idempotency-Key header
// with the same fields and image; 422 when that key stored an upload with another body. Keys
// are the user's own: another user's key of the same name is another key.
// Without the header the server makes a key up: the upload is then not protected against
// client retries, but its commit can still be verified.
func (s *server) process(k *kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		switch {
		case key == "":
			key = "server:" + randomKey()
		case len(key) > maxIdempotencyKey || strings.ContainsFunc(key, func(r rune) bool { return r < ' ' || r > '~' }):
			writeError(w, http.StatusBadRequest, "Idempotency-Key must be 1 to "+strconv.Itoa(maxIdempotencyKey)+" printable ASCII characters")
			return
		}

		form, img, herr := readUpload(w, r)
		if herr != nil {
			writeError(w, herr.status, herr.msg)
			return
		}
		fields, err := validate(k, form, s.today())
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		up := upload{fields: fields, image: img, contentType: sniff(img)}
		up.hash = bodyHash(k, up)

		who := caller(r.Context())
		id, created, err := s.store.create(r.Context(), k, who.id, key, up)
		if errors.Is(err, errKeyReused) {
			writeError(w, http.StatusUnprocessableEntity, errKeyReused.Error())
			return
		}
		if errors.Is(err, errQuota) {
			writeError(w, http.StatusForbidden, errQuota.Error()+" ("+strconv.FormatInt(s.store.quota>>20, 10)+" MiB)")
			return
		}
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		d, err := s.store.get(r.Context(), k, viewer{id: who.id}, id)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		w.Header().Set("Location", "/"+k.name+"/"+strconv.FormatInt(id, 10))
		writeJSON(w, status, d)
	}
}

// readUpload reads a multipart/form-data body: the "image" file and the other form values.
// It fails with 415 for another content type, 413 when too large, 400 otherwise.
func readUpload(w http.ResponseWriter, r *http.Request) (form map[string]string, img []byte, herr *httpError) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return nil, nil, &httpError{http.StatusUnsupportedMediaType, "the body must be multipart/form-data"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUploadBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, &httpError{http.StatusBadRequest, "the body is not multipart/form-data with a boundary"}
	}
	form = map[string]string{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, bodyError(err)
		}
		name := part.FormName()
		switch {
		case name == "image":
			if img != nil {
				return nil, nil, &httpError{http.StatusBadRequest, "more than one image"}
			}
			img, err = io.ReadAll(io.LimitReader(part, maxImageBytes+1))
			if err != nil {
				return nil, nil, bodyError(err)
			}
			if len(img) > maxImageBytes {
				return nil, nil, &httpError{http.StatusRequestEntityTooLarge, "the image is larger than 5 MiB"}
			}
		case name == "" || part.FileName() != "":
			return nil, nil, &httpError{http.StatusBadRequest, "unexpected file or unnamed part " + strconv.Quote(name)}
		default:
			if _, dup := form[name]; dup {
				return nil, nil, &httpError{http.StatusBadRequest, name + ": given more than once"}
			}
			if len(form) == maxFormFields {
				return nil, nil, &httpError{http.StatusBadRequest, "too many form fields"}
			}
			v, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
			if err != nil {
				return nil, nil, bodyError(err)
			}
			if len(v) > maxFieldBytes {
				return nil, nil, &httpError{http.StatusBadRequest, name + ": longer than " + strconv.Itoa(maxFieldBytes) + " bytes"}
			}
			form[name] = string(v)
		}
	}
	if len(img) == 0 {
		return nil, nil, &httpError{http.StatusBadRequest, "image: a JPEG, PNG or PDF file is required"}
	}
	if ct := sniff(img); !slices.Contains(allowedImageTypes, ct) {
		return nil, nil, &httpError{http.StatusBadRequest, "image: must be JPEG, PNG or PDF, got " + ct}
	}
	if herr := checkDimensions(img); herr != nil {
		return nil, nil, herr
	}
	return form, img, nil
}

// checkDimensions reads the header of a PNG or JPEG and refuses an image that cannot be read
// or whose size is over maxImageSide or maxImagePixels: a client that decodes it could be made
// to allocate gigabytes. A PDF is not decoded.
func checkDimensions(img []byte) *httpError {
	if sniff(img) == "application/pdf" {
		return nil
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		return &httpError{http.StatusBadRequest, "image: not a readable JPEG or PNG"}
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > maxImageSide || cfg.Height > maxImageSide || cfg.Width*cfg.Height > maxImagePixels {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("image: %d x %d pixels, want at most %d on a side and %d in all",
			cfg.Width, cfg.Height, maxImageSide, maxImagePixels)}
	}
	return nil
}

// bodyError turns an error reading the request body into a 413 or 400.
func bodyError(err error) *httpError {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &httpError{http.StatusRequestEntityTooLarge, "the upload is larger than " + strconv.Itoa(maxUploadBytes) + " bytes"}
	}
	return &httpError{http.StatusBadRequest, "the multipart body is malformed or cut short"}
}

// bodyHash is the SHA-256 of an upload's kind, validated fields (in k's order, each in its
// canonical form, so that "A1, B" and "A1,B" are the same categories) and image: what an
// idempotency key is bound to.
func bodyHash(k *kind, up upload) []byte {
	h := sha256.New()
	put := func(s string) { // length-prefixed, so that no two bodies write the same bytes
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(k.name)
	for _, f := range k.fields {
		put(f.name)
		switch v := up.fields[f.name].(type) {
		case nil:
			put("null")
		case time.Time:
			put("date:" + v.Format(dateLayout))
		case []string:
			put("list:" + strconv.Itoa(len(v)))
			for _, item := range v {
				put(item)
			}
		default:
			put(fmt.Sprintf("%T:%v", v, v))
		}
	}
	put(up.contentType)
	put(string(up.image))
	return h.Sum(nil)
}

// sniff returns the content type of data, without parameters.
func sniff(data []byte) string {
	ct, _, _ := strings.Cut(http.DetectContentType(data), ";")
	return ct
}

func randomKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
