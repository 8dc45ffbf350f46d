package main

// End-to-end tests of what makes docapi deployable (issue 16): per-user access, login abuse
// limits, idempotency keys bound to their body, safe image serving, errors and logs in the
// API's words, readiness that agrees with the pool, logout and token expiry. Each runs with two
// ordinary users (testEmail, otherEmail) and, where it matters, an admin.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
)

// loginFrom posts a login as if from client address addr (through the trusted loopback proxy)
// and returns the status, headers and body.
func (a *api) loginFrom(addr, email, password string) (int, http.Header, []byte, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return a.send(http.MethodPost, "/auth/login", "-", "application/json", body, "X-Forwarded-For", addr)
}

func bearer(token string) string { return "Bearer " + token }

func TestOwnerScoping(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	other := a.login(otherEmail, otherPassword)
	admin := a.login(adminEmail, adminPassword)

	// The first user stores one card of each kind, the second one permis.
	mine := map[string]int64{}
	for i, k := range kinds {
		status, doc := a.upload(k, validForm(k), pngImage(t, uint8(i)), "")
		if status != http.StatusCreated {
			t.Fatalf("upload %s: %d %v", k.name, status, doc)
		}
		mine[k.name] = id(t, doc)
	}
	body, ct := multipartBody(validForm(permis), pngImage(t, 9))
	status, _, resp := a.request(http.MethodPost, "/permis/process", bearer(other), ct, body)
	if status != http.StatusCreated {
		t.Fatalf("upload as the other user: %d %s", status, resp)
	}
	theirs := id(t, decode(t, resp))

	listIDs := func(token, kind string) []int64 {
		t.Helper()
		status, _, body := a.request(http.MethodGet, "/"+kind+"/all", bearer(token), "", nil)
		if status != http.StatusOK {
			t.Fatalf("list %s: %d %s", kind, status, body)
		}
		var ids []int64
		for _, it := range decode(t, body)["items"].([]any) {
			ids = append(ids, id(t, it.(map[string]any)))
		}
		return ids
	}
	if got := listIDs(a.token, "permis"); !slices.Equal(got, []int64{mine["permis"]}) {
		t.Errorf("the first user lists permis %v, want only their own %d", got, mine["permis"])
	}
	if got := listIDs(other, "permis"); !slices.Equal(got, []int64{theirs}) {
		t.Errorf("the second user lists permis %v, want only their own %d", got, theirs)
	}
	if got := listIDs(other, "cin"); len(got) != 0 {
		t.Errorf("the second user lists cin %v, want none", got)
	}
	if got := listIDs(admin, "permis"); !slices.Equal(got, []int64{theirs, mine["permis"]}) {
		t.Errorf("the admin lists permis %v, want both users' %v", got, []int64{theirs, mine["permis"]})
	}

	// Another user's id answers exactly as an id that does not exist: 404, same body.
	_, _, missing := a.request(http.MethodGet, "/permis/999999", bearer(other), "", nil)
	for _, k := range kinds {
		for _, suffix := range []string{"", "/image"} {
			path := fmt.Sprintf("/%s/%d%s", k.name, mine[k.name], suffix)
			status, _, body := a.request(http.MethodGet, path, bearer(other), "", nil)
			if status != http.StatusNotFound {
				t.Errorf("GET %s as the other user: %d, want 404: %s", path, status, body)
			}
			if k == permis && suffix == "" && !bytes.Equal(body, missing) {
				t.Errorf("GET %s as the other user says %s, a missing id says %s", path, body, missing)
			}
			if status, _, body := a.request(http.MethodGet, path, "", "", nil); status != http.StatusOK {
				t.Errorf("GET %s as its owner: %d %s", path, status, body)
			}
			if status, _, body := a.request(http.MethodGet, path, bearer(admin), "", nil); status != http.StatusOK {
				t.Errorf("GET %s as the admin: %d %s", path, status, body)
			}
		}
	}
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	other := a.login(otherEmail, otherPassword)
	img := pngImage(t, 1)
	status, first := a.upload(permis, validForm(permis), img, "scan-1")
	if status != http.StatusCreated {
		t.Fatalf("first upload: %d %v", status, first)
	}
	changed := maps.Clone(validForm(permis))
	changed["nom_fr"] = "Bennani"
	respaced := maps.Clone(validForm(permis))
	respaced["categories"] = "A1,B" // the same categories as "A1, B"

	tests := []struct {
		name   string
		fields map[string]string
		image  []byte
		want   int
	}{
		{"same body", validForm(permis), img, http.StatusOK},
		{"same values, other spacing", respaced, img, http.StatusOK},
		{"another field value", changed, img, http.StatusUnprocessableEntity},
		{"another image", validForm(permis), pngImage(t, 2), http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, doc := a.upload(permis, tt.fields, tt.image, "scan-1")
			if status != tt.want {
				t.Fatalf("status %d, want %d: %v", status, tt.want, doc)
			}
			if status == http.StatusOK && id(t, doc) != id(t, first) {
				t.Errorf("id %v, want the stored %v", doc["id"], first["id"])
			}
			if msg, _ := doc["error"].(string); status == http.StatusUnprocessableEntity && !strings.Contains(msg, "Idempotency-Key") {
				t.Errorf("422 message %q does not name the Idempotency-Key", msg)
			}
		})
	}
	if got := a.getJSON(fmt.Sprintf("/permis/%d", id(t, first)), http.StatusOK); got["nom_fr"] != first["nom_fr"] {
		t.Errorf("the stored document changed: nom_fr %v, want %v", got["nom_fr"], first["nom_fr"])
	}

	// Keys are per user: the other user's "scan-1" is a new key, even with another body.
	body, ct := multipartBody(changed, pngImage(t, 3))
	status, _, resp := a.request(http.MethodPost, "/permis/process", bearer(other), ct, body, "Idempotency-Key", "scan-1")
	if status != http.StatusCreated || id(t, decode(t, resp)) == id(t, first) {
		t.Errorf("the other user's scan-1: %d %s, want 201 and a new document", status, resp)
	}
}

func TestImageHeaders(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	_, pngDoc := a.upload(cin, validForm(cin), pngImage(t, 4), "")
	_, jpegDoc := a.upload(cin, validForm(cin), jpegImage(t), "")
	_, pdfDoc := a.upload(cin, validForm(cin), pdfDocument, "")
	_, htmlDoc := a.upload(cin, validForm(cin), pngImage(t, 5), "")
	// A type docapi never stores itself, as an old or hand-edited row could hold.
	if _, err := a.pool.Exec(t.Context(), `UPDATE cin SET image_type = 'text/html' WHERE id = $1`, id(t, htmlDoc)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		doc             map[string]any
		wantType        string
		wantDisposition string
	}{
		{"PNG", pngDoc, "image/png", "inline"},
		{"JPEG", jpegDoc, "image/jpeg", "inline"},
		{"PDF", pdfDoc, "application/pdf", "attachment"},
		{"HTML", htmlDoc, "application/octet-stream", "attachment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, _ := a.request(http.MethodGet, fmt.Sprintf("/cin/%d/image", id(t, tt.doc)), "", "", nil)
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			if got := h.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			if got, _, _ := strings.Cut(h.Get("Content-Disposition"), ";"); got != tt.wantDisposition {
				t.Errorf("Content-Disposition %q, want %s", h.Get("Content-Disposition"), tt.wantDisposition)
			}
			if got := h.Get("Content-Security-Policy"); !strings.HasPrefix(got, "sandbox") {
				t.Errorf("Content-Security-Policy %q, want sandbox", got)
			}
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
		})
	}
}

func TestLoginErrorsInTheAPIsWords(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	tests := []struct {
		name, contentType, body string
		want                    int
		wantIn                  string // part of the error message
	}{
		{"form encoded", "application/x-www-form-urlencoded", "email=a%40b.c&password=x", http.StatusUnsupportedMediaType, "application/json"},
		{"plain text", "text/plain", `{"email":"a@b.c","password":"x"}`, http.StatusUnsupportedMediaType, "application/json"},
		{"no content type", "", `{"email":"a@b.c","password":"x"}`, http.StatusUnsupportedMediaType, "application/json"},
		{"JSON with charset", "application/json; charset=utf-8", `{"email":"agent@example.com","password":"correct horse battery"}`, http.StatusOK, ""},
		{"empty", "application/json", ``, http.StatusBadRequest, "empty"},
		{"cut short", "application/json", `{"email":"agent@example.com",`, http.StatusBadRequest, "not valid JSON"},
		{"garbage", "application/json", `email=agent`, http.StatusBadRequest, "not valid JSON"},
		{"number for email", "application/json", `{"email":1,"password":"x"}`, http.StatusBadRequest, `"email" must be a JSON string`},
		{"array", "application/json", `["agent@example.com"]`, http.StatusBadRequest, `"email", "password"`},
		{"unknown key", "application/json", `{"email":"a@b.c","password":"x","admin":true}`, http.StatusBadRequest, `unknown key "admin"`},
		{"two objects", "application/json", `{"email":"a@b.c","password":"x"}{}`, http.StatusBadRequest, "one JSON object"},
	}
	goWords := regexp.MustCompile(`json:|invalid character|unexpected EOF|Go value|unmarshal`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := a.request(http.MethodPost, "/auth/login", "-", tt.contentType, []byte(tt.body))
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, body)
			}
			msg, _ := decode(t, body)["error"].(string)
			if !strings.Contains(msg, tt.wantIn) {
				t.Errorf("error %q, want it to say %q", msg, tt.wantIn)
			}
			if goWords.MatchString(msg) {
				t.Errorf("error %q speaks Go's decoder words", msg)
			}
		})
	}
	// The upload's multipart errors too.
	status, _, body := a.request(http.MethodPost, "/cin/process", "", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"))
	if msg, _ := decode(t, body)["error"].(string); status != http.StatusBadRequest || goWords.MatchString(msg) || strings.Contains(msg, "multipart: ") {
		t.Errorf("broken multipart: %d %q, want 400 in the API's words", status, msg)
	}
}

// TestLoginThrottle checks the limits one by one: per e-mail, then per client address. Every
// delay is an hour here, so that what is delayed does not depend on the clock.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	a := newAPI(t, withLoginDelay(time.Hour))
	const attacker, neighbour, home = "203.0.113.7", "198.51.100.2", "127.0.0.1" // home: where newAPI logged in

	// Per e-mail: after emailFailureLimit wrong passwords, the right one from a new address waits.
	for i := range emailFailureLimit {
		if status, _, body, err := a.loginFrom(attacker, testEmail, "wrong password "+strconv.Itoa(i)); err != nil || status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d %s %v, want 401", i, status, body, err)
		}
	}
	for _, from := range []string{attacker, neighbour} {
		status, h, body, err := a.loginFrom(from, testEmail, testPassword)
		if err != nil || status != http.StatusTooManyRequests {
			t.Fatalf("right password from %s after %d failures: %d %s %v, want 429", from, emailFailureLimit, status, body, err)
		}
		if secs, err := strconv.Atoi(h.Get("Retry-After")); err != nil || secs < 1 {
			t.Errorf("Retry-After %q, want a number of seconds", h.Get("Retry-After"))
		}
	}
	// The user, from the address they logged in from before, is not locked out.
	if status, _, body, err := a.loginFrom(home, testEmail, testPassword); err != nil || status != http.StatusOK {
		t.Fatalf("the user from an address they logged in from: %d %s %v, want 200", status, body, err)
	}
	// The other user is not locked out, from the attacker's own address either.
	if status, _, body, err := a.loginFrom(attacker, otherEmail, otherPassword); err != nil || status != http.StatusOK {
		t.Fatalf("the other user: %d %s %v, want 200", status, body, err)
	}

	// Per address: failures spread over many e-mails delay the address, not the others.
	for i := 0; ; i++ {
		status, _, body, err := a.loginFrom(attacker, fmt.Sprintf("nobody%d@example.com", i), "guess")
		if err != nil {
			t.Fatal(err)
		}
		if status == http.StatusTooManyRequests {
			if i+1 < addrFailureLimit-emailFailureLimit {
				t.Errorf("address throttled after %d more failures, want %d in all", i, addrFailureLimit)
			}
			break
		}
		if status != http.StatusUnauthorized || i > addrFailureLimit {
			t.Fatalf("unknown e-mail %d: %d %s, want 401 and then 429 by %d failures", i, status, body, addrFailureLimit)
		}
	}
	if status, _, body, _ := a.loginFrom(attacker, adminEmail, adminPassword); status != http.StatusTooManyRequests {
		t.Errorf("right password from the throttled address: %d %s, want 429", status, body)
	}
	if status, _, body, _ := a.loginFrom(neighbour, adminEmail, adminPassword); status != http.StatusOK {
		t.Errorf("right password from another address: %d %s, want 200", status, body)
	}
}

// TestLoginRejectsMalformedEmails answers 400 to an e-mail that cannot be an address, before
// any query (a NUL byte made PostgreSQL fail with 22021, a 500), and counts it against the
// address.
func TestLoginRejectsMalformedEmails(t *testing.T) {
	t.Parallel()
	a := newAPI(t, withLoginDelay(time.Hour))
	malformed := []string{"agent\x00@example.com", "agent@example.com\x00", "no-at-sign", "@example.com", "agent@",
		"a@b@example.com", "a b@example.com", "agent\n@example.com", strings.Repeat("a", 250) + "@example.com"}
	for i := range addrFailureLimit {
		email := malformed[i%len(malformed)]
		status, _, body, err := a.loginFrom("203.0.113.9", email, "whatever")
		if err != nil || status != http.StatusBadRequest {
			t.Errorf("e-mail %q: %d %s %v, want 400", email, status, body, err)
		}
	}
	if status, _, _, _ := a.loginFrom("203.0.113.9", "nobody@example.com", "x"); status != http.StatusTooManyRequests {
		t.Errorf("after %d malformed e-mails from one address: %d, want 429 (they count as failures)", addrFailureLimit, status)
	}
}

// TestLoginFlood sends 200 wrong-password logins at once while /healthz is polled and the other
// user logs in. It asserts behaviour (429s appear, bcrypt ran no more often than the limits
// allow, the other user gets in) and logs the latencies. The passwords are hashed at bcrypt's
// default cost here, as in production, so that the flood costs what it would; under the race
// detector, which makes bcrypt some fifty times slower, at the lowest cost, and the latencies
// logged mean nothing.
func TestLoginFlood(t *testing.T) {
	a := newAPI(t, withLoginDelay(time.Hour))
	cost := bcrypt.DefaultCost
	if raceEnabled {
		cost = bcrypt.MinCost
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), cost)
	if err != nil {
		t.Fatal(err)
	}
	otherHash, _ := bcrypt.GenerateFromPassword([]byte(otherPassword), cost)
	for _, u := range []struct {
		email string
		hash  []byte
	}{{testEmail, hash}, {otherEmail, otherHash}} {
		if err := a.store.saveUser(t.Context(), u.email, u.hash, false); err != nil {
			t.Fatal(err)
		}
	}
	const attempts = 200
	// The other user has logged in before, from the address they log in from under the flood.
	if status, _, body, err := a.loginFrom("198.51.100.2", otherEmail, otherPassword); err != nil || status != http.StatusOK {
		t.Fatalf("the other user's first login: %d %s %v", status, body, err)
	}

	type result struct {
		statuses                        map[int]int
		healthP50, healthP99, healthMax time.Duration
		otherStatus                     int
		otherTook, took                 time.Duration
		ahead                           int64 // comparisons answered before the other user's login
	}
	flood := func(t *testing.T, from func(i int) (addr, email string)) result {
		res := result{statuses: map[int]int{}}
		var mu sync.Mutex
		var compared atomic.Int64
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range attempts {
			addr, email := from(i)
			wg.Go(func() {
				<-start
				// Each guess differs, so that no two share a comparison.
				status, h, body, err := a.loginFrom(addr, email, "guess "+strconv.Itoa(i))
				if status == http.StatusUnauthorized {
					compared.Add(1)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("attempt %d: %v", i, err)
					return
				}
				res.statuses[status]++
				if status == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After: %s", body)
				}
			})
		}
		// /healthz on its own connection, polled throughout.
		stop := make(chan struct{})
		var health []time.Duration
		var hwg sync.WaitGroup
		hwg.Go(func() {
			client := &http.Client{}
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				resp, err := client.Get(a.url + "/healthz")
				if err != nil {
					t.Errorf("healthz: %v", err)
					return
				}
				resp.Body.Close()
				health = append(health, time.Since(t0))
				time.Sleep(5 * time.Millisecond)
			}
		})
		t0 := time.Now()
		close(start)
		time.Sleep(20 * time.Millisecond) // the flood is under way
		status, _, body, err := a.loginFrom("198.51.100.2", otherEmail, otherPassword)
		if err != nil {
			t.Fatal(err)
		}
		res.otherStatus, res.otherTook, res.ahead = status, time.Since(t0), compared.Load()
		if status != http.StatusOK {
			t.Logf("the other user's login: %d %s", status, body)
		}
		wg.Wait()
		res.took = time.Since(t0)
		close(stop)
		hwg.Wait()
		slices.Sort(health)
		if n := len(health); n > 0 {
			res.healthP50, res.healthP99, res.healthMax = health[n/2], health[(n*99)/100], health[n-1]
		}
		t.Logf("bcrypt cost %d, %d slot(s): %d attempts in %s: statuses %v; /healthz over %d polls: p50 %s p99 %s max %s; other user's login %d after %s, %d wrong passwords compared before it",
			cost, bcryptSlots, attempts, res.took.Round(time.Millisecond), res.statuses, len(health), res.healthP50, res.healthP99, res.healthMax,
			res.otherStatus, res.otherTook.Round(time.Millisecond), res.ahead)
		return res
	}

	t.Run("one address, one e-mail", func(t *testing.T) {
		r := flood(t, func(int) (string, string) { return "203.0.113.7", testEmail })
		if r.statuses[http.StatusTooManyRequests] == 0 {
			t.Errorf("no 429 among %v", r.statuses)
		}
		// Logins for one e-mail go ahead only within its remaining failures and look at the
		// limits again on their turn: no more wrong passwords are compared than the limit.
		if n := r.statuses[http.StatusUnauthorized]; n > emailFailureLimit {
			t.Errorf("%d wrong passwords were compared, want at most %d", n, emailFailureLimit)
		}
		if r.otherStatus != http.StatusOK {
			t.Errorf("the other user's login: %d, want 200", r.otherStatus)
		}
	})
	t.Run("200 addresses, 20 e-mails", func(t *testing.T) {
		// Spread out: every attempt passes the address limit, and only the e-mail limit and
		// the bcrypt slots bound the work. Measured only: the other user may wait its turn.
		emails := make([]string, 20)
		for i := range emails {
			emails[i] = fmt.Sprintf("user%d@example.com", i)
			if err := a.store.saveUser(t.Context(), emails[i], hash, false); err != nil {
				t.Fatal(err)
			}
		}
		r := flood(t, func(i int) (string, string) {
			return fmt.Sprintf("192.0.2.%d", i%250+1), emails[i%len(emails)]
		})
		for status := range r.statuses {
			if status != http.StatusUnauthorized && status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
				t.Errorf("status %d among %v, want only 401, 429 and 503", status, r.statuses)
			}
		}
		if n := r.statuses[http.StatusUnauthorized]; n > len(emails)*emailFailureLimit {
			t.Errorf("%d wrong passwords were compared, want at most %d", n, len(emails)*emailFailureLimit)
		}
	})
	t.Run("120 addresses, 120 e-mails", func(t *testing.T) {
		// The attack of issue 26: the other user, known to their e-mail, goes before the
		// flood's queue, and the flood's addresses take turns. (The e-mails exist: an unknown
		// one is compared with a hash at the tests' lowest cost.)
		for i := range 120 {
			if err := a.store.saveUser(t.Context(), fmt.Sprintf("flood%d@example.com", i), hash, false); err != nil {
				t.Fatal(err)
			}
		}
		waitedBefore, _ := a.handler.(*server).bcrypt.known()
		r := flood(t, func(i int) (string, string) {
			return fmt.Sprintf("192.0.2.%d", i%120+1), fmt.Sprintf("flood%d@example.com", i%120)
		})
		if r.otherStatus != http.StatusOK {
			t.Errorf("the other user's login: %d, want 200", r.otherStatus)
		}
		// Its login waits in the bcrypt queue's priority line and no flood comparison is granted
		// a slot while it waits. (r.ahead, the flood's comparisons answered before its response,
		// is measured only: it also counts those made while its request read its user from the
		// database and saved its token, beside 200 flood requests doing the same: 1 at bcrypt
		// cost 10, 10-17 under -race at cost 4 on a 2-core machine.)
		waited, passed := a.handler.(*server).bcrypt.known()
		if waited == waitedBefore || passed != 0 {
			t.Errorf("known logins that waited in the priority queue: %d, slots granted to others meanwhile: %d; want at least 1, 0", waited-waitedBefore, passed)
		}
	})
	t.Run("one address, unknown e-mails", func(t *testing.T) {
		// One address gets its share of the queue; its logins beyond are busy, and count
		// against it.
		r := flood(t, func(i int) (string, string) { return "203.0.113.99", fmt.Sprintf("unknown%d@example.com", i) })
		if r.statuses[http.StatusServiceUnavailable] == 0 {
			t.Errorf("no 503 among %v: the address took more than its share", r.statuses)
		}
		if n := a.handler.(*server).addrFailures.count("203.0.113.99"); n < r.statuses[http.StatusServiceUnavailable] {
			t.Errorf("the address has %d failures after %d busy answers, want them counted", n, r.statuses[http.StatusServiceUnavailable])
		}
	})
}

func TestLogoutAndExpiry(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	first, second := a.token, a.login(testEmail, testPassword)
	other := a.login(otherEmail, otherPassword)

	if status, _, body := a.request(http.MethodPost, "/auth/logout", bearer(first), "", nil); status != http.StatusNoContent {
		t.Fatalf("logout: %d %s, want 204", status, body)
	}
	for name, tt := range map[string]struct {
		token string
		want  int
	}{
		"the revoked token":           {first, http.StatusUnauthorized},
		"the same user's other token": {second, http.StatusOK},
		"the other user's token":      {other, http.StatusOK},
	} {
		if status, _, body := a.request(http.MethodGet, "/permis/all", bearer(tt.token), "", nil); status != tt.want {
			t.Errorf("%s: %d %s, want %d", name, status, body, tt.want)
		}
	}
	if status, _, _ := a.request(http.MethodPost, "/auth/logout", bearer(first), "", nil); status != http.StatusUnauthorized {
		t.Errorf("logout again with the revoked token: %d, want 401", status)
	}

	// Expiry: the login says when, and after that time the token stops working.
	body, _ := json.Marshal(map[string]string{"email": otherEmail, "password": otherPassword})
	_, _, resp := a.request(http.MethodPost, "/auth/login", "-", "application/json", body)
	login := decode(t, resp)
	expires, err := time.Parse(time.RFC3339, login["expires_at"].(string))
	if err != nil || expires.Before(time.Now().Add(defaultTokenTTL-time.Hour)) || expires.After(time.Now().Add(defaultTokenTTL+time.Minute)) {
		t.Errorf("expires_at %v (%v), want about %s from now", login["expires_at"], err, defaultTokenTTL)
	}
	token := login["token"].(string)
	if status, _, _ := a.request(http.MethodGet, "/cin/all", bearer(token), "", nil); status != http.StatusOK {
		t.Fatalf("fresh token: %d", status)
	}
	// Move its expiry into the past, as time passing would.
	if _, err := a.pool.Exec(t.Context(), `UPDATE tokens SET expires_at = now() - interval '1 second' WHERE hash = $1`, hashToken(token)); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := a.request(http.MethodGet, "/cin/all", bearer(token), "", nil); status != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", status)
	}
	if status, _, _ := a.request(http.MethodGet, "/cin/all", bearer(other), "", nil); status != http.StatusOK {
		t.Errorf("the other user's unexpired token: %d, want 200", status)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	a := newAPILogged(t, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	other := a.login(otherEmail, otherPassword)

	var uid int64
	if err := a.pool.QueryRow(t.Context(), `SELECT id FROM users WHERE email = $1`, otherEmail).Scan(&uid); err != nil {
		t.Fatal(err)
	}
	requests := []struct {
		path, auth, requestID string
		wantStatus            int
	}{
		{"/permis/all", bearer(other), "trace-0001", http.StatusOK},
		{"/permis/12345", bearer(other), "trace-0002", http.StatusNotFound},
		{"/cin/all", "-", "trace-0003", http.StatusUnauthorized},
		{"/healthz", "-", "bad id with spaces", http.StatusOK},
	}
	before := strings.Count(logs.String(), "docapi: request")
	for _, r := range requests {
		status, h, body := a.request(http.MethodGet, r.path, r.auth, "", nil, "X-Request-Id", r.requestID)
		if status != r.wantStatus {
			t.Fatalf("GET %s: %d %s", r.path, status, body)
		}
		got := h.Get("X-Request-Id")
		if strings.Contains(r.requestID, " ") {
			if got == "" || got == r.requestID {
				t.Errorf("X-Request-Id %q for a malformed one, want a new id", got)
			}
			continue
		}
		if got != r.requestID {
			t.Errorf("X-Request-Id %q, want %q echoed", got, r.requestID)
		}
	}
	var lines []string
	for sc := bufio.NewScanner(strings.NewReader(logs.String())); sc.Scan(); {
		if strings.Contains(sc.Text(), "docapi: request") {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines)-before != len(requests) {
		t.Fatalf("%d access-log lines for %d requests:\n%s", len(lines)-before, len(requests), strings.Join(lines[before:], "\n"))
	}
	for i, r := range requests[:3] {
		line := lines[before+i]
		wantUser := uid
		if r.auth == "-" {
			wantUser = 0
		}
		for _, want := range []string{
			"request_id=" + r.requestID, "path=" + r.path, "status=" + strconv.Itoa(r.wantStatus),
			"user=" + strconv.FormatInt(wantUser, 10), "retries=0", "db_failures=0", "duration_ms=",
		} {
			if !strings.Contains(line, want) {
				t.Errorf("access-log line %q lacks %q", line, want)
			}
		}
	}
}

// pollReady calls /readyz every interval until stop is closed and returns the statuses seen,
// in order (0 for a transport error), and how many 200s said the database was being retried.
func (a *api) pollReady(stop <-chan struct{}, interval time.Duration) (seen []int, retrying int) {
	for {
		status, _, body, err := a.send(http.MethodGet, "/readyz", "-", "", nil)
		if err != nil {
			status = 0
		}
		seen = append(seen, status)
		if status == http.StatusOK && decode(a.t, body)["database"] == "retrying" {
			retrying++
		}
		select {
		case <-stop:
			return seen, retrying
		case <-time.After(interval):
		}
	}
}

// TestReadyzRidesThroughBlips kills every backend, then restarts the server (down 2 s) while
// /readyz is polled: the pool rides both out, so readiness must not drop. Not parallel: the
// faults hit the whole server.
func TestReadyzRidesThroughBlips(t *testing.T) {
	a := newAPI(t)
	a.getJSON("/permis/all", http.StatusOK) // the pool holds a connection to lose

	stop := make(chan struct{})
	seen := make(chan []int, 1)
	var retrying int
	go func() {
		statuses, r := a.pollReady(stop, 100*time.Millisecond)
		retrying = r
		seen <- statuses
	}()
	if _, err := srv.TerminateBackends(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	restartErr := srv.Restart(t.Context(), 2*time.Second)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	statuses := <-seen
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	t.Logf("/readyz during a backend kill and a 2 s restart: %v, %d of the 200s while the database was retried", counts, retrying)
	if counts[http.StatusOK] != len(statuses) || len(statuses) < 5 {
		t.Errorf("/readyz answered %v (in order: %v), want only 200s", counts, statuses)
	}
	if retrying == 0 {
		t.Error("no /readyz call met the outage: the test did not test the blip")
	}
	a.getJSON("/permis/all", http.StatusOK) // and the API works again
}

// TestReadyzReportsAnOutage stops the server for longer than the ready budget: /readyz must turn
// 503, and 200 again once the server is back. Not parallel: the server stops for every test.
func TestReadyzReportsAnOutage(t *testing.T) {
	const budget = 2 * time.Second
	a := newAPI(t, withReadyBudget(budget))
	if err := srv.StopServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			srv.StartServer(t.Context())
		}
	})
	down := time.Now()
	var first503 time.Duration
	for time.Since(down) < 30*time.Second {
		status, h, body, err := a.send(http.MethodGet, "/readyz", "-", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if status == http.StatusServiceUnavailable {
			first503 = time.Since(down)
			if h.Get("Retry-After") == "" || decode(t, body)["error"] == "" {
				t.Errorf("503 without Retry-After or error: %v %s", h, body)
			}
			break
		}
		if status != http.StatusOK {
			t.Fatalf("/readyz: %d %s, want 200 and then 503", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if first503 == 0 {
		t.Fatal("/readyz never answered 503 in 30 s with the server stopped")
	}
	if first503 < budget {
		t.Errorf("/readyz answered 503 after %s, before the budget of %s", first503, budget)
	}
	if err := srv.StartServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	started = true
	back := time.Now()
	for {
		status, _, _, err := a.send(http.MethodGet, "/readyz", "-", "", nil)
		if err == nil && status == http.StatusOK {
			break
		}
		if time.Since(back) > 30*time.Second {
			t.Fatalf("/readyz still %d 30 s after the server came back", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("/readyz: 503 %s after the server stopped (budget %s), 200 %s after it was back",
		first503.Round(time.Millisecond), budget, time.Since(back).Round(time.Millisecond))
}

// TestAccessLogCountsRetries makes an upload's transaction lose its connection mid-way, so that
// the pool runs it again, and checks that the request's access-log line counts that retry.
// The upload's INSERT is made to wait on a row lock held by the test, and its backend is
// terminated while it waits.
func TestAccessLogCountsRetries(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	a := newAPILogged(t, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx := t.Context()
	var uid int64
	var db string
	if err := a.pool.QueryRow(ctx, `SELECT id, current_database() FROM users WHERE email = $1`, testEmail).Scan(&uid, &db); err != nil {
		t.Fatal(err)
	}

	// Hold the idempotency key in an open transaction: the upload's INSERT waits for it.
	blocker, err := a.pool.Pgx().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(context.WithoutCancel(ctx))
	img := pngImage(t, 6)
	if _, err := blocker.Exec(ctx, `INSERT INTO permis (user_id, idempotency_key, numero_permis, nom_fr, prenom_fr,
		date_naissance, date_delivrance, categories, image, image_type, image_size)
		VALUES ($1, 'held', 'X1', 'A', 'B', '1990-01-01', '2015-01-01', '{B}', $2, 'image/png', $3)`, uid, img, len(img)); err != nil {
		t.Fatal(err)
	}

	type answer struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		body, ct := multipartBody(validForm(permis), img)
		status, _, resp, err := a.send(http.MethodPost, "/permis/process", "", ct, body, "Idempotency-Key", "held", "X-Request-Id", "retried-upload")
		done <- answer{status, resp, err}
	}()

	admin, err := pgx.Connect(ctx, srv.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var killed bool
	for deadline := time.Now().Add(30 * time.Second); !killed && time.Now().Before(deadline); {
		err := admin.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO "permis"%'`, db).Scan(&killed)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !killed {
		t.Fatal("the upload never waited on the held key")
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	ans := <-done
	if ans.err != nil || ans.status != http.StatusCreated {
		t.Fatalf("upload: %d %s %v, want 201 once the transaction ran again", ans.status, ans.body, ans.err)
	}
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "request_id=retried-upload") {
			line = l
		}
	}
	// The INSERT failed once (its backend was killed), and the transaction ran again.
	for _, want := range []string{"status=201", "retries=1", "db_failures=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("access-log line %q, want %s", line, want)
		}
	}
}

// TestSetupUserAdminFlag sets the configured user's admin flag at start, both ways, as
// DOCAPI_USER_ADMIN says.
func TestSetupUserAdminFlag(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, tt := range []struct {
		value   string
		want    bool
		wantErr bool
	}{{"true", true, false}, {"", false, false}, {"1", true, false}, {"false", false, false}, {"maybe", false, true}} {
		vars := map[string]string{"DOCAPI_USER_EMAIL": "boss@example.com", "DOCAPI_USER_PASSWORD": "long enough password", "DOCAPI_USER_ADMIN": tt.value}
		err := setupUser(t.Context(), a.store, func(k string) string { return vars[k] }, false, io.Discard)
		if (err != nil) != tt.wantErr {
			t.Fatalf("DOCAPI_USER_ADMIN=%q: error %v, want error %v", tt.value, err, tt.wantErr)
		}
		if err != nil {
			continue
		}
		var admin bool
		if err := a.pool.QueryRow(t.Context(), `SELECT admin FROM users WHERE email = 'boss@example.com'`).Scan(&admin); err != nil {
			t.Fatal(err)
		}
		if admin != tt.want {
			t.Errorf("DOCAPI_USER_ADMIN=%q: admin %v, want %v", tt.value, admin, tt.want)
		}
	}
}

// TestTokensRevokedOnUserChange: a new password or admin flag revokes the user's tokens; the
// same settings again (a restart) keep them.
func TestTokensRevokedOnUserChange(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	works := func(token string) bool {
		status, _, _ := a.request(http.MethodGet, "/permis/all", bearer(token), "", nil)
		return status == http.StatusOK
	}
	tests := []struct {
		name     string
		password string
		admin    bool
		revoked  bool
	}{
		{"same settings", testPassword, false, false},
		{"admin flag", testPassword, true, true},
		{"password", "a brand new password", true, true},
	}
	for _, tt := range tests {
		token := a.login(testEmail, testPassword) // the password before this change
		if err := ensureUser(t.Context(), a.store, testEmail, tt.password, tt.admin); err != nil {
			t.Fatal(err)
		}
		if got := !works(token); got != tt.revoked {
			t.Errorf("%s: token revoked %v, want %v", tt.name, got, tt.revoked)
		}
	}
}
