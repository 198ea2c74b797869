package load

// ParseStd exposes the encoding/json parser for the comparison benchmark and
// as the fuzz oracle.
var ParseStd = parseStd
