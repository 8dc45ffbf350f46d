//go:build !race

package main

// raceEnabled reports a build with the race detector, under which bcrypt runs many times slower.
const raceEnabled = false
