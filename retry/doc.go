// Package retry decides whether a failed PostgreSQL call may be run again,
// and runs it again with exponential backoff and full jitter.
//
// # Why
//
// A service behind a cloud database sees connections die: Neon suspends an
// idle compute and kills its sessions, load balancers and NATs drop idle
// flows, servers restart. libpq reports the result as "SSL connection has
// been closed unexpectedly" or "server closed the connection unexpectedly";
// pgx as "unexpected EOF", "conn closed", a reset, or a FATAL with SQLSTATE
// 57P01. Retrying hides these blips from users, but a retry is right only
// when it cannot make something happen twice: an INSERT whose connection
// died after the server received it may have been committed, and running it
// again inserts a second row. This package knows the difference.
//
// # Classes
//
// [Classify] sorts every error into one of four classes, by what the server
// may have done:
//
//	| class     | what the server provably did                     | safe to retry                        |
//	|-----------|--------------------------------------------------|--------------------------------------|
//	| NotSent   | it did not run the statement                     | any statement                        |
//	| Conflict  | it rolled the transaction back (40001, 40P01,    | the statement alone when it was the  |
//	|           | a stale cached plan 0A000)                       | whole transaction; else the whole Tx |
//	| ConnLost  | unknown: the connection died, it may have run    | idempotent work, a whole transaction |
//	| Permanent | anything else, or unknown                        | nothing                              |
//
// [Safe] is NotSent and Conflict; [Idempotent] and [Transaction] add ConnLost.
//
// The doc comment of each class lists the errors in it and explains why the
// retry is or is not safe. Classification uses error types and SQLSTATE
// codes; text is matched only for errors that carry nothing else (libpq's
// wording passed on by other drivers) and for provider answers sent with a
// generic code (Neon's "Couldn't connect to compute node" and "endpoint is
// disabled").
//
// # Retrying
//
// [Do] and [DoValue] call a function until it succeeds, the [Policy] gives
// up, or the context ends. [Policy.RetryOn] says which classes the call may
// retry, from the sets [Safe] (the default), [Idempotent] and [Transaction].
// Waits follow an exponential envelope built on
// github.com/cenkalti/backoff/v4 (25 ms, 50 ms, ... up to 1 s by default),
// and each wait is drawn uniformly from zero to the envelope ("full
// jitter"), so that the many callers a restart fails at once do not come
// back in step. [DefaultPolicy] rides through a Neon cold start and a
// server restart of a few seconds, and gives up after 15 s; the doc comment
// of the Default constants gives the reasoning.
//
// When Do gives up after retrying it returns an [*Error] with the number of
// attempts, wrapping the last error, so errors.Is and errors.As keep
// working on it.
//
// # What this package does not do
//
// It does not know whether a function is idempotent or runs a whole
// transaction: the caller says so by choosing RetryOn. It does not decide
// what to do about a COMMIT whose outcome is unknown; that is the pool's
// business, which reports it as its own error rather than retrying it. It
// has no state and starts no goroutines.
package retry
