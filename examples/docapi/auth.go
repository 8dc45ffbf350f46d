package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

const (
	// defaultTokenTTL is how long a bearer token stays valid after login.
	defaultTokenTTL = 24 * time.Hour
	// tokenBytes is the number of random bytes in a token (base64url: 43 characters).
	tokenBytes = 32
	// minPasswordLen is the shortest password accepted for a configured user.
	minPasswordLen = 8
)

// bcryptCost is the work factor of stored password hashes. Tests lower it.
var bcryptCost = bcrypt.DefaultCost

// newToken returns a random bearer token and the SHA-256 hash under which it is stored.
func newToken() (token string, hash []byte) {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// maxEmailLen is the longest e-mail address (RFC 5321's path limit).
const maxEmailLen = 254

// validEmail reports whether email (normalized) can be an address: at most maxEmailLen
// bytes of valid UTF-8, one "@" with text on both sides, and no control character or space
// (PostgreSQL refuses a NUL byte in text with an error, 22021).
func validEmail(email string) bool {
	local, domain, ok := strings.Cut(email, "@")
	return ok && local != "" && domain != "" && !strings.Contains(domain, "@") &&
		len(email) <= maxEmailLen && utf8.ValidString(email) &&
		!strings.ContainsFunc(email, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) })
}

// normalizeEmail makes e-mail addresses compare the way users expect.
func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ensureUser creates the user, or sets its password and admin flag; a change of either
// revokes the user's tokens.
func ensureUser(ctx context.Context, st *store, email, password string, admin bool) error {
	email = normalizeEmail(email)
	if !validEmail(email) {
		return fmt.Errorf("user e-mail %q is not an address", email)
	}
	if len(password) < minPasswordLen {
		return fmt.Errorf("the password of %s must have at least %d characters", email, minPasswordLen)
	}
	// The same password keeps its hash, so that a restart with the same settings does not
	// revoke the user's tokens (saveUser revokes them when the hash or the flag changes).
	_, hash, err := st.userByEmail(ctx, email)
	if err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	if err != nil || bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		hash, err = bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
		if err != nil {
			return fmt.Errorf("the password of %s: %w", email, err) // bcrypt.ErrPasswordTooLong
		}
	}
	return st.saveUser(ctx, email, hash, admin)
}

// dummyHash is compared against when the e-mail is unknown, so that a login for an unknown
// user takes as long as one with a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcryptCost)
	return h
})

// login handles POST /auth/login {"email", "password"} -> {"token", "token_type", "expires_at"}.
//
// Abuse limits (see throttle.go): an e-mail or client address with too many recent failures
// gets 429 with Retry-After, before any password work; no more logins for one e-mail are in
// flight than its remaining failures allow, and password comparisons run at most bcryptSlots
// at a time; a login that cannot get its turn in loginMaxWait gets 503 with Retry-After.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be JSON, sent with Content-Type: application/json")
		return
	}
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if !s.decodeJSON(w, r, &req, "email", "password") {
		return
	}
	if req.Email == "" || req.Password == "" {
		writeError(w, http.StatusBadRequest, "email and password are required")
		return
	}
	email, addr := normalizeEmail(req.Email), s.clientAddr(r)
	if !validEmail(email) {
		s.addrFailures.fail(addr)
		s.metrics.login("failed")
		writeError(w, http.StatusBadRequest, "email is not an e-mail address")
		return
	}
	// A client that has logged in to this e-mail before meets the delays of its own failures
	// with it, not those that anyone else caused.
	login := s.known.key(email, addr)
	known := login != email
	if s.throttled(w, login, addr) {
		return
	}
	// Logins for one e-mail go ahead only while, all wrong, they would stay within the
	// e-mail's limit; then each comparison takes a bcrypt slot. After each wait the limits are
	// checked again: a burst's later attempts meet the failures of its first ones and are
	// answered 429 without any password work.
	deadline := time.Now().Add(loginMaxWait)
	may := func(inflight int) bool {
		if s.emailFailures.retryAfter(login) > 0 {
			return true // go on, to a 429
		}
		return inflight == 0 || s.emailFailures.count(login)+inflight < emailFailureLimit
	}
	if !s.emailTurns.enter(r.Context(), login, loginMaxWait, may) {
		s.loginBusy(w)
		return
	}
	defer s.emailTurns.leave(login)
	if s.throttled(w, login, addr) {
		return
	}
	id, hash, err := s.store.userByEmail(r.Context(), email)
	switch {
	case errors.Is(err, errNotFound):
		hash = dummyHash()
	case err != nil:
		s.serverError(w, r, err)
		return
	}
	ok, busy := s.checkPassword(r.Context(), deadline, login, addr, known, hash, req.Password)
	if busy != queueGranted {
		if busy == queueOverShare {
			s.addrFailures.fail(addr) // a flood from one address pays for itself
		}
		s.loginBusy(w)
		return
	}
	if ok == nil {
		// Throttled while it waited for a slot (and, should that have just expired, busy).
		if !s.throttled(w, login, addr) {
			s.loginBusy(w)
		}
		return
	}
	if !*ok || id == 0 {
		s.emailFailures.fail(login)
		s.addrFailures.fail(addr)
		s.metrics.login("failed")
		writeError(w, http.StatusUnauthorized, "wrong email or password")
		return
	}
	s.emailFailures.reset(login)
	s.known.add(email, addr)
	setUser(r.Context(), id)

	token, tokenHash := newToken()
	expires := time.Now().Add(s.tokenTTL)
	if err := s.store.saveToken(r.Context(), tokenHash, id, expires); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.metrics.login("ok")
	writeJSON(w, http.StatusOK, map[string]any{
		"token":      token,
		"token_type": "Bearer",
		"expires_at": expires.UTC().Format(time.RFC3339),
	})
}

// loginBusy answers 503 to a login that waited too long for its turn.
func (s *server) loginBusy(w http.ResponseWriter) {
	s.metrics.login("busy")
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "too many logins at once, retry later")
}

// checkPassword compares password with hash in a bcrypt slot (fairQueue), waiting for one
// until deadline; email is the e-mail throttle's key. It answers busy (queueBusy, or
// queueOverShare when addr has its share of logins waiting) when no slot came, ok nil when the
// e-mail or the address became throttled while it waited (no comparison ran), and otherwise
// whether the password matches.
//
// Identical checks in flight at once (same e-mail, password and hash: a crowd of correct
// logins to one account, or a burst of one wrong password) share one comparison. Each caller
// still counts its own failure. No result outlives the comparison.
func (s *server) checkPassword(ctx context.Context, deadline time.Time, email, addr string, known bool, hash []byte, password string) (ok *bool, busy queueResult) {
	h := sha256.New()
	for _, part := range []string{string(hash), email, password} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part)))) // no two splits alike
		h.Write([]byte(part))
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	for {
		res := s.checks.do(ctx, key, func() checkResult {
			// The first caller compares for all: its client's going away must not fail theirs.
			switch s.bcrypt.acquire(context.WithoutCancel(ctx), addr, known, time.Until(deadline)) {
			case queueBusy:
				return checkBusy
			case queueOverShare:
				return checkOverShare
			}
			defer s.bcrypt.release()
			if s.throttleWait(email, addr) > 0 {
				return checkSkipped
			}
			if bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil {
				return checkRight
			}
			return checkWrong
		})
		switch res {
		case checkBusy:
			return nil, queueBusy
		case checkOverShare:
			return nil, queueOverShare
		case checkRight, checkWrong:
			match := res == checkRight
			return &match, queueGranted
		}
		// The first caller's address was throttled; this one's may be too.
		if s.throttleWait(email, addr) > 0 {
			return nil, queueGranted
		}
		if !time.Now().Before(deadline) {
			return nil, queueBusy
		}
	}
}

// throttleWait is how long the e-mail or the address must wait before its next login.
func (s *server) throttleWait(email, addr string) time.Duration {
	return max(s.emailFailures.retryAfter(email), s.addrFailures.retryAfter(addr))
}

// throttled answers 429 with Retry-After when the e-mail or the address has failed too often.
func (s *server) throttled(w http.ResponseWriter, email, addr string) bool {
	wait := s.throttleWait(email, addr)
	if wait <= 0 {
		return false
	}
	s.metrics.login("throttled")
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins, retry in %d s", secs))
	return true
}

// logout handles POST /auth/logout: the token it is sent with stops working. 204.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.store.revokeToken(r.Context(), caller(r.Context()).tokenHash); err != nil {
		s.serverError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type principalKey struct{}

// principal is the authenticated caller of a request.
type principal struct {
	viewer
	tokenHash []byte
}

// caller returns the authenticated caller of a request that went through requireAuth.
func caller(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// requireAuth lets a request through only with a valid "Authorization: Bearer <token>"
// header, and answers 401 otherwise.
func (s *server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || len(token) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
			unauthorized(w, "missing or malformed bearer token")
			return
		}
		hash := hashToken(token)
		v, err := s.store.userByToken(r.Context(), hash)
		switch {
		case errors.Is(err, errNotFound):
			unauthorized(w, "invalid, expired or revoked token")
			return
		case err != nil:
			s.serverError(w, r, err)
			return
		}
		setUser(r.Context(), v.id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal{v, hash})))
	})
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="docapi"`)
	writeError(w, http.StatusUnauthorized, msg)
}
