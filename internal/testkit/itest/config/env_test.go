package config_test

import (
	"testing"
)

// setEnv sets vars for the test after clearing the environment. A value of "\x00unset" leaves
// the variable unset.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	clearEnv(t)
	for k, v := range vars {
		if v == "\x00unset" {
			continue
		}
		t.Setenv(k, v)
	}
}
