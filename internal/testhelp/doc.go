// Package testhelp holds the test helpers that the root module's unit tests and the
// integration tests in internal/testkit/itest share, written once: a clean environment for
// the config tests ([ClearEnv], [SetEnv]) and the wrapping forms an error class must survive
// ([CheckClass]). Subpackage oteltest collects OpenTelemetry metrics and spans; package
// internal/pgfake is the fake server of the unit tests.
//
// It lives in the root module rather than in internal/testkit because a root-module test
// cannot import the nested module internal/testkit: that module requires the root module, so
// the root would have to require it back (a module cycle), and with it testcontainers and the
// Docker client. The integration tests can import it, since internal/testkit's import path is
// below the root module's. Only tests import it.
package testhelp
