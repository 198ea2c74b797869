package perf

import "time"

// BuildReport fills a report the way Run does, from each repetition's
// values by row key (RSS rows are key+"_rss_peak" and key+"_rss_steady"),
// with the cases in na reported as not available.
func BuildReport(records, reps int, values []map[string]float64, na map[string]string) *Report {
	o, err := Options{Exe: "sluice", Records: records, Reps: reps, Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}.withDefaults()
	if err != nil {
		panic(err)
	}
	r := newReport(o)
	for _, vals := range values {
		r.startRep()
		for k, v := range vals {
			r.add(k, v)
		}
		for k, why := range na {
			r.setNA(k, why)
		}
		r.addRatios()
	}
	r.finish()
	return r
}
