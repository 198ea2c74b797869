package config

import "slices"

// WithoutSources returns c without its record of where values came from,
// so tests can compare configs with reflect.DeepEqual.
func WithoutSources(c Config) Config {
	c.src = nil
	return c
}

// FileKeys lists the keys whose values came from the file, sorted.
func FileKeys(c *Config) []string {
	var out []string
	for k, o := range c.src.origin {
		if o.source == SourceFile {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
