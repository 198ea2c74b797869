package process_test

import "testing"

func addCorpus(f *testing.F) {}
