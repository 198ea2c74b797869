package load

import "context"

// ParseStd exposes the encoding/json parser for the comparison benchmark and
// as the fuzz oracle.
var ParseStd = parseStd

// NewReconnectScraper exposes the scraper of sluice's /metrics.
var NewReconnectScraper = newReconnectScraper

func (s *reconnectScraper) Scrape(ctx context.Context) string { return s.scrape(ctx) }
func (s *reconnectScraper) Total() (int64, bool)              { return s.total() }
func (s *reconnectScraper) OK() bool                          { return s.ok() }
