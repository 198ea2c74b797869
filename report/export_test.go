package report

// Ticks exposes ticks to the external tests.
var Ticks = ticks
