package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	// tokenTTL is how long a bearer token stays valid after login.
	tokenTTL = 24 * time.Hour
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

// normalizeEmail makes e-mail addresses compare the way users expect.
func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ensureUser creates the user, or sets its password.
func ensureUser(ctx context.Context, st *store, email, password string) error {
	email = normalizeEmail(email)
	if email == "" || !strings.Contains(email, "@") {
		return fmt.Errorf("user e-mail %q is not an address", email)
	}
	if len(password) < minPasswordLen {
		return fmt.Errorf("the password of %s must have at least %d characters", email, minPasswordLen)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return fmt.Errorf("the password of %s: %w", email, err) // bcrypt.ErrPasswordTooLong
	}
	return st.saveUser(ctx, email, hash)
}

// dummyHash is compared against when the e-mail is unknown, so that a login for an unknown
// user takes as long as one with a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcryptCost)
	return h
})

// login handles POST /auth/login {"email", "password"} -> {"token", "token_type", "expires_at"}.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if !s.decodeJSON(w, r, &req) {
		return
	}
	if req.Email == "" || req.Password == "" {
		writeError(w, http.StatusBadRequest, "email and password are required")
		return
	}
	id, hash, err := s.store.userByEmail(r.Context(), normalizeEmail(req.Email))
	switch {
	case errors.Is(err, errNotFound):
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(req.Password))
		writeError(w, http.StatusUnauthorized, "wrong email or password")
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) != nil {
		writeError(w, http.StatusUnauthorized, "wrong email or password")
		return
	}
	token, tokenHash := newToken()
	expires := time.Now().Add(tokenTTL)
	if err := s.store.saveToken(r.Context(), tokenHash, id, expires); err != nil {
		s.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token":      token,
		"token_type": "Bearer",
		"expires_at": expires.UTC().Format(time.RFC3339),
	})
}

type userKey struct{}

// userID returns the authenticated user of a request that went through requireAuth.
func userID(ctx context.Context) int64 {
	id, _ := ctx.Value(userKey{}).(int64)
	return id
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
		id, err := s.store.userByToken(r.Context(), hashToken(token))
		switch {
		case errors.Is(err, errNotFound):
			unauthorized(w, "invalid or expired token")
			return
		case err != nil:
			s.serverError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, id)))
	})
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="docapi"`)
	writeError(w, http.StatusUnauthorized, msg)
}
