package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/examples/internal/loadgen"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"golang.org/x/crypto/bcrypt"
)

var srv *pgharness.Server

func TestMain(m *testing.M) {
	bcryptCost = bcrypt.MinCost
	pgharness.Main(m, &srv, pgharness.Options{})
}

const (
	testEmail     = "agent@example.com"
	testPassword  = "correct horse battery"
	otherEmail    = "other@example.com" // a second, ordinary user
	otherPassword = "another long password"
	adminEmail    = "admin@example.com" // a user with the admin flag
	adminPassword = "the admin's password"
)

// api is docapi on a fresh database of the harness, served by httptest, with a logged-in token.
type api struct {
	t       testing.TB
	url     string
	pool    *pool.Pool    // the primary's
	cluster *pool.Cluster // the primary and the replicas
	store   *store
	token   string
	client  *http.Client

	handler http.Handler // the server under test
	logger  *slog.Logger
}

// newAPI starts docapi with three users (testEmail, otherEmail, adminEmail, the last an admin),
// with a token for testEmail, behind a loopback proxy whose X-Forwarded-For it trusts (so that
// tests can play several client addresses), and logs at Warn to the test's output.
func newAPI(t testing.TB, opts ...serverOption) *api {
	t.Helper()
	return newAPILogged(t, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), opts...)
}

// newAPILogged is newAPI with the server's logger.
func newAPILogged(t testing.TB, logger *slog.Logger, opts ...serverOption) *api {
	t.Helper()
	s := pgharness.Require(t, srv)
	ctx := t.Context()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return startAPI(t, logger, cfg, nil, opts...)
}

// startAPI is newAPILogged on a database of the caller's: the primary's configuration and
// the replicas' (as DATABASE_URL and DATABASE_REPLICA_URLS give them).
func startAPI(t testing.TB, logger *slog.Logger, cfg *config.Config, replicas []*config.Config, opts ...serverOption) *api {
	t.Helper()
	ctx := t.Context()
	tel, err := newTelemetry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.close() })
	c, err := pool.NewCluster(ctx, cfg, replicas, pool.WithMemberOptions(pool.WithLogger(logger), traceRequests(),
		pool.WithObserver(tel.observer), pool.WithObserver(requestObserver{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	p := c.Primary()
	if err := tel.register(p); err != nil {
		t.Fatal(err)
	}
	opts = append([]serverOption{withTelemetry(tel)}, opts...)
	if err := migrate(ctx, p, logger); err != nil {
		t.Fatal(err)
	}
	a := &api{t: t, pool: p, cluster: c, store: newStore(c, logger)}
	for _, u := range []struct {
		email, password string
		admin           bool
	}{{testEmail, testPassword, false}, {otherEmail, otherPassword, false}, {adminEmail, adminPassword, true}} {
		if err := ensureUser(ctx, a.store, u.email, u.password, u.admin); err != nil {
			t.Fatal(err)
		}
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	a.handler, a.logger = newServer(c, logger, append([]serverOption{withTrustedProxies(loopback)}, opts...)...), logger
	ts := httptest.NewServer(a.handler)
	t.Cleanup(ts.Close)
	a.url, a.client = ts.URL, ts.Client()
	a.token = a.login(testEmail, testPassword)
	return a
}

// request sends a request with the api's token (unless auth is set: "-" sends none) and returns
// the status, headers and body. hdr holds more header names and values. It fails the test on a
// transport error: call send instead from other goroutines.
func (a *api) request(method, path, auth, contentType string, body []byte, hdr ...string) (int, http.Header, []byte) {
	a.t.Helper()
	status, h, b, err := a.send(method, path, auth, contentType, body, hdr...)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, h, b
}

// send is request that returns transport errors.
func (a *api) send(method, path, auth, contentType string, body []byte, hdr ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	switch auth {
	case "":
		req.Header.Set("Authorization", "Bearer "+a.token)
	case "-":
	default:
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// getJSON sends GET path with the token, checks the status, and decodes the JSON answer.
func (a *api) getJSON(path string, wantStatus int) map[string]any {
	a.t.Helper()
	status, _, body := a.request(http.MethodGet, path, "", "", nil)
	if status != wantStatus {
		a.t.Fatalf("GET %s: status %d, want %d: %s", path, status, wantStatus, body)
	}
	return decode(a.t, body)
}

func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %q", err, body)
	}
	return m
}

func (a *api) login(email, password string) string {
	a.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	status, _, resp := a.request(http.MethodPost, "/auth/login", "-", "application/json", body)
	if status != http.StatusOK {
		a.t.Fatalf("login: status %d: %s", status, resp)
	}
	token, _ := decode(a.t, resp)["token"].(string)
	if token == "" {
		a.t.Fatalf("login: no token in %s", resp)
	}
	return token
}

// multipartBody encodes form values and, unless image is nil, an "image" file.
func multipartBody(fields map[string]string, image []byte) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		mw.WriteField(k, fields[k])
	}
	if image != nil {
		fw, _ := mw.CreateFormFile("image", "card")
		fw.Write(image)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// upload posts a card and returns the status and the decoded answer.
func (a *api) upload(k *kind, fields map[string]string, image []byte, key string) (int, map[string]any) {
	a.t.Helper()
	body, ct := multipartBody(fields, image)
	var hdr []string
	if key != "" {
		hdr = []string{"Idempotency-Key", key}
	}
	status, _, resp := a.request(http.MethodPost, "/"+k.name+"/process", "", ct, body, hdr...)
	return status, decode(a.t, resp)
}

func pngImage(t testing.TB, shade uint8) []byte {
	img := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = shade + uint8(i)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegImage(t testing.TB) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	img.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var pdfDocument = []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")

func id(t testing.TB, doc map[string]any) int64 {
	t.Helper()
	f, ok := doc["id"].(float64)
	if !ok {
		t.Fatalf("no id in %v", doc)
	}
	return int64(f)
}

func TestHealth(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, body := a.request(http.MethodGet, path, "-", "", nil); status != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	tests := []struct {
		name string
		body string
		want int
	}{
		{"ok", `{"email":"agent@example.com","password":"correct horse battery"}`, http.StatusOK},
		{"email case and spaces", `{"email":" Agent@Example.com ","password":"correct horse battery"}`, http.StatusOK},
		{"wrong password", `{"email":"agent@example.com","password":"wrong horse battery"}`, http.StatusUnauthorized},
		{"unknown user", `{"email":"nobody@example.com","password":"correct horse battery"}`, http.StatusUnauthorized},
		{"malformed JSON", `{"email":"agent@example.com",`, http.StatusBadRequest},
		{"not an object", `["agent@example.com"]`, http.StatusBadRequest},
		{"unknown key", `{"email":"agent@example.com","password":"x","admin":true}`, http.StatusBadRequest},
		{"two objects", `{"email":"a@b.c","password":"x"}{}`, http.StatusBadRequest},
		{"missing password", `{"email":"agent@example.com"}`, http.StatusBadRequest},
		{"too large", `{"email":"` + strings.Repeat("a", maxJSONBody) + `","password":"x"}`, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := a.request(http.MethodPost, "/auth/login", "-", "application/json", []byte(tt.body))
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, body)
			}
			m := decode(t, body)
			if tt.want == http.StatusOK {
				if tok, _ := m["token"].(string); len(tok) != 43 {
					t.Errorf("token %q, want 43 base64url characters", tok)
				}
			} else if msg, _ := m["error"].(string); msg == "" {
				t.Errorf("no error message in %s", body)
			}
		})
	}
}

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	a := newAPI(t)

	// A token whose expiry has passed.
	expired, hash := newToken()
	var uid int64
	if err := a.pool.QueryRow(t.Context(), `SELECT id FROM users WHERE email = $1`, testEmail).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(t.Context(), `INSERT INTO tokens (hash, user_id, expires_at) VALUES ($1, $2, now() - interval '1 second')`, hash, uid); err != nil {
		t.Fatal(err)
	}
	unknown, _ := newToken()

	routes := []struct{ method, path string }{
		{"GET", "/permis/all"}, {"GET", "/cin/all"}, {"GET", "/gris/all"},
		{"GET", "/permis/1"}, {"GET", "/cin/1/image"}, {"POST", "/gris/process"},
		{"GET", "/debug/pool"},
	}
	auths := map[string]string{
		"none":          "-",
		"empty bearer":  "Bearer ",
		"basic":         "Basic YWdlbnQ6eA==",
		"short token":   "Bearer abc",
		"unknown token": "Bearer " + unknown,
		"expired token": "Bearer " + expired,
	}
	for _, r := range routes {
		for name, auth := range auths {
			status, hdr, body := a.request(r.method, r.path, auth, "", nil)
			if status != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %s: status %d, want 401 with WWW-Authenticate: %s", r.method, r.path, name, status, body)
			}
		}
		if status, _, body := a.request(r.method, r.path, "bearer "+a.token, "", nil); status == http.StatusUnauthorized {
			t.Errorf("%s %s with a valid token: 401: %s", r.method, r.path, body)
		}
	}
}

func TestDebugPool(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if status, _, body := a.request(http.MethodGet, "/debug/pool", "", "", nil); status != http.StatusForbidden {
		t.Errorf("/debug/pool for a user: %d %s, want 403", status, body)
	}
	if status, _, body := a.request(http.MethodGet, "/metrics", "", "", nil); status != http.StatusForbidden {
		t.Errorf("/metrics for a user: %d %s, want 403", status, body)
	}
	if status, _, body := a.request(http.MethodGet, "/metrics", "-", "", nil); status != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d %s, want 401", status, body)
	}
	a.token = a.login(adminEmail, adminPassword)
	stats := a.getJSON("/debug/pool", http.StatusOK)
	members, _ := stats["members"].([]any)
	if len(members) != 1 {
		t.Fatalf("members %v, want the primary alone", stats["members"])
	}
	primary, _ := members[0].(map[string]any)
	if primary["role"] != pool.RolePrimary {
		t.Errorf("role %v, want %s", primary["role"], pool.RolePrimary)
	}
	for _, k := range []string{"lag_bytes", "reads", "pool"} {
		if _, ok := primary[k]; !ok {
			t.Errorf("no %q in %v", k, primary)
		}
	}
	ps, _ := primary["pool"].(map[string]any)
	for _, k := range []string{"size", "checked_in", "checked_out", "overflow", "retries"} {
		if _, ok := ps[k]; !ok {
			t.Errorf("no %q in the primary's pool stats %v", k, ps)
		}
	}
}

func TestUploadAndRead(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for i, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			img := pngImage(t, uint8(i))
			key := "key-" + k.name
			status, doc := a.upload(k, validForm(k), img, key)
			if status != http.StatusCreated {
				t.Fatalf("upload: status %d, want 201: %v", status, doc)
			}
			docID := id(t, doc)
			for name, want := range validForm(k) {
				got := fmt.Sprint(doc[name])
				if name == "categories" {
					want = "[A1 B]"
				}
				if name == "puissance_fiscale" {
					want = "6"
				}
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if doc["image_type"] != "image/png" || doc["image_size"] != float64(len(img)) {
				t.Errorf("image_type %v, image_size %v; want image/png, %d", doc["image_type"], doc["image_size"], len(img))
			}

			got := a.getJSON(fmt.Sprintf("/%s/%d", k.name, docID), http.StatusOK)
			if !maps.EqualFunc(got, doc, func(x, y any) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
				t.Errorf("GET = %v\nupload answered %v", got, doc)
			}

			status, hdr, body := a.request(http.MethodGet, fmt.Sprintf("/%s/%d/image", k.name, docID), "", "", nil)
			if status != http.StatusOK || hdr.Get("Content-Type") != "image/png" || !bytes.Equal(body, img) {
				t.Errorf("GET image: status %d, type %q, %d bytes; want 200, image/png, the %d bytes sent",
					status, hdr.Get("Content-Type"), len(body), len(img))
			}

			list := a.getJSON("/"+k.name+"/all", http.StatusOK)
			items, _ := list["items"].([]any)
			if len(items) != 1 || id(t, items[0].(map[string]any)) != docID {
				t.Fatalf("list = %v, want the one document", list)
			}
			if _, ok := items[0].(map[string]any)["image"]; ok {
				t.Error("list items carry the image bytes")
			}

			// A client retry with the same key returns the stored document, once.
			status, again := a.upload(k, validForm(k), img, key)
			if status != http.StatusOK || id(t, again) != docID {
				t.Errorf("replay: status %d id %v, want 200 and id %d", status, again["id"], docID)
			}
			// Another key is another document; no key at all too.
			status, other := a.upload(k, validForm(k), img, key+"-2")
			if status != http.StatusCreated || id(t, other) == docID {
				t.Errorf("new key: status %d id %v, want 201 and a new id", status, other["id"])
			}
			if status, _ := a.upload(k, validForm(k), img, ""); status != http.StatusCreated {
				t.Errorf("no key: status %d, want 201", status)
			}
		})
	}
}

func TestUploadRejects(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	png := pngImage(t, 0)
	big := append(append([]byte{}, png...), make([]byte, maxImageBytes)...)
	with := func(k *kind, change map[string]string) map[string]string {
		f := maps.Clone(validForm(k))
		maps.Copy(f, change)
		return f
	}
	tests := []struct {
		name   string
		kind   *kind
		fields map[string]string
		image  []byte
		key    string
		raw    []byte // instead of a multipart body, with contentType
		ctype  string
		want   int
	}{
		{name: "JPEG", kind: cin, image: jpegImage(t), want: http.StatusCreated},
		{name: "PDF", kind: gris, image: pdfDocument, want: http.StatusCreated},
		{name: "missing field", kind: permis, fields: map[string]string{"numero_permis": "1"}, image: png, want: http.StatusBadRequest},
		{name: "bad date", kind: cin, fields: with(cin, map[string]string{"date_naissance": "31/12/1985"}), image: png, want: http.StatusBadRequest},
		{name: "future birth", kind: cin, fields: with(cin, map[string]string{"date_naissance": "2999-01-01"}), image: png, want: http.StatusBadRequest},
		{name: "too long", kind: gris, fields: with(gris, map[string]string{"marque": strings.Repeat("x", 51)}), image: png, want: http.StatusBadRequest},
		{name: "value over 1 KiB", kind: gris, fields: with(gris, map[string]string{"adresse": strings.Repeat("x", 2000)}), image: png, want: http.StatusBadRequest},
		{name: "unknown field", kind: cin, fields: with(cin, map[string]string{"numero_permis": "1"}), image: png, want: http.StatusBadRequest},
		{name: "text file", kind: permis, image: []byte("numero_permis=1\n"), want: http.StatusBadRequest},
		{name: "GIF", kind: permis, image: []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), want: http.StatusBadRequest},
		{name: "no image", kind: permis, want: http.StatusBadRequest},
		{name: "empty image", kind: permis, image: []byte{}, want: http.StatusBadRequest},
		{name: "image over 5 MiB", kind: permis, image: big, want: http.StatusRequestEntityTooLarge},
		{name: "not multipart", kind: cin, raw: []byte(`{"numero_cin":"1"}`), ctype: "application/json", want: http.StatusUnsupportedMediaType},
		{name: "broken multipart", kind: cin, raw: []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"), ctype: "multipart/form-data; boundary=x", want: http.StatusBadRequest},
		{name: "idempotency key too long", kind: cin, image: png, key: strings.Repeat("k", 201), want: http.StatusBadRequest},
		{name: "idempotency key not ASCII", kind: cin, image: png, key: "clé", want: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := tt.fields
			if fields == nil {
				fields = validForm(tt.kind)
			}
			body, ct := multipartBody(fields, tt.image)
			if tt.raw != nil {
				body, ct = tt.raw, tt.ctype
			}
			var hdr []string
			if tt.key != "" {
				hdr = []string{"Idempotency-Key", tt.key}
			}
			status, _, resp := a.request(http.MethodPost, "/"+tt.kind.name+"/process", "", ct, body, hdr...)
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, resp)
			}
			if m := decode(t, resp); status >= 400 && m["error"] == "" {
				t.Errorf("no error message: %s", resp)
			}
		})
	}
}

func TestNotFoundAndBadRequests(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/permis/999999", http.StatusNotFound},
		{"GET", "/cin/999999/image", http.StatusNotFound},
		{"GET", "/gris/abc", http.StatusBadRequest},
		{"GET", "/gris/0", http.StatusBadRequest},
		{"GET", "/permis/all?limit=0", http.StatusBadRequest},
		{"GET", "/permis/all?limit=201", http.StatusBadRequest},
		{"GET", "/permis/all?limit=ten", http.StatusBadRequest},
		{"GET", "/permis/all?after=-1", http.StatusBadRequest},
		{"GET", "/passeport/all", http.StatusNotFound},
		{"DELETE", "/permis/1", http.StatusMethodNotAllowed},
		{"GET", "/permis/process", http.StatusBadRequest}, // {id} = "process"
	}
	for _, tt := range tests {
		status, _, body := a.request(tt.method, tt.path, "", "", nil)
		if status != tt.want {
			t.Errorf("%s %s: status %d, want %d: %s", tt.method, tt.path, status, tt.want, body)
			continue
		}
		if msg, _ := decode(t, body)["error"].(string); msg == "" {
			t.Errorf("%s %s: no JSON error: %s", tt.method, tt.path, body)
		}
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	var want []int64
	for i := range 7 {
		status, doc := a.upload(permis, validForm(permis), pngImage(t, uint8(i)), "p"+strconv.Itoa(i))
		if status != http.StatusCreated {
			t.Fatalf("upload %d: %d %v", i, status, doc)
		}
		want = append([]int64{id(t, doc)}, want...) // newest first
	}
	var got []int64
	pages := 0
	path := "/permis/all?limit=3"
	for {
		page := a.getJSON(path, http.StatusOK)
		pages++
		for _, it := range page["items"].([]any) {
			got = append(got, id(t, it.(map[string]any)))
		}
		next, ok := page["next_after"].(float64)
		if !ok {
			break
		}
		path = fmt.Sprintf("/permis/all?limit=3&after=%d", int64(next))
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("got %v in %d pages, want %v in 3", got, pages, want)
	}
	if items := a.getJSON("/cin/all", http.StatusOK)["items"].([]any); len(items) != 0 {
		t.Errorf("cin list = %v, want empty", items)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	dsn, err := s.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	logger := slog.New(slog.DiscardHandler)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = migrate(t.Context(), p, logger) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrate %d: %v", i, err)
		}
	}
	if err := migrate(t.Context(), p, logger); err != nil {
		t.Errorf("migrate again: %v", err)
	}
	ms, _ := loadMigrations(migrationFiles, "migrations")
	var n int
	if err := p.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(ms) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", n, err, len(ms))
	}
}

// TestBurstWithBackendKills kills every backend twice in the middle of a burst of concurrent
// lists and uploads: no request may fail, and every upload is stored exactly once. It is not
// parallel: the kills hit every database of the server.
func TestBurstWithBackendKills(t *testing.T) {
	a := newAPI(t)
	const workers, perWorker = 8, 50
	const total = workers * perWorker
	img := pngImage(t, 7)
	var done atomic.Int64
	kill := make(chan struct{}, 2)

	var mu sync.Mutex
	var failures []string
	uploaded := map[string]int64{} // idempotency key -> document id
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				switch n := done.Add(1); n {
				case total / 3, 2 * total / 3:
					kill <- struct{}{}
				}
				k := kinds[(w+i)%len(kinds)]
				if i%3 != 0 {
					path := "/" + k.name + "/all?limit=20"
					if status, _, body, err := a.send(http.MethodGet, path, "", "", nil); err != nil || status != http.StatusOK {
						fail("GET %s: %d %s %v", path, status, body, err)
					}
					continue
				}
				key := fmt.Sprintf("burst-%d-%d", w, i)
				body, ct := multipartBody(validForm(k), img)
				for attempt := range 2 { // the second is a client retry: same key, same document
					status, _, resp, err := a.send(http.MethodPost, "/"+k.name+"/process", "", ct, body, "Idempotency-Key", key)
					want := []int{http.StatusCreated, http.StatusOK}[attempt]
					var doc struct{ ID int64 }
					if err == nil && status == want {
						err = json.Unmarshal(resp, &doc)
					}
					if err != nil || status != want || doc.ID == 0 {
						fail("upload %s attempt %d: %d, want %d: %s %v", key, attempt, status, want, resp, err)
						continue
					}
					docID := doc.ID
					mu.Lock()
					if prev, ok := uploaded[k.name+"/"+key]; ok && prev != docID {
						failures = append(failures, fmt.Sprintf("upload %s: id %d, then %d", key, prev, docID))
					}
					uploaded[k.name+"/"+key] = docID
					mu.Unlock()
				}
			}
		})
	}
	killed := 0
	for range 2 {
		<-kill
		n, err := srv.TerminateBackends(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		killed += n
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests failed, the first ones:\n%s", len(failures), strings.Join(failures[:min(10, len(failures))], "\n"))
	}
	if killed == 0 {
		t.Error("no backend was terminated")
	}
	t.Logf("%d backends terminated; pool stats: %+v", killed, a.pool.Stats())

	// Each idempotency key stored exactly once.
	stored := 0
	for _, k := range kinds {
		rows, err := a.pool.Query(t.Context(), `SELECT idempotency_key, count(*) FROM `+k.name+` GROUP BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var key string
			var n int
			if err := rows.Scan(&key, &n); err != nil {
				t.Fatal(err)
			}
			stored++
			if n != 1 {
				t.Errorf("%s %s stored %d times", k.name, key, n)
			}
			if _, ok := uploaded[k.name+"/"+key]; !ok {
				t.Errorf("%s %s stored but never acknowledged", k.name, key)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if stored != len(uploaded) {
		t.Errorf("%d documents stored, %d uploads acknowledged", stored, len(uploaded))
	}
}

// TestLoadgen runs the load generator briefly against docapi, as an admin (who may read
// /debug/pool for the report).
func TestLoadgen(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	cfg := loadgen.Config{URL: a.url, Email: adminEmail, Password: adminPassword, Users: 4, Duration: time.Second}
	r, err := loadgen.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Print(&out)
	t.Log("\n" + out.String())
	if r.Failed() != 0 || r.Total.Requests < cfg.Users {
		t.Errorf("%d of %d requests failed, want some requests and no failure", r.Failed(), r.Total.Requests)
	}
	if r.PoolStats == nil {
		t.Error("the report lacks docapi's pool stats")
	}
}
