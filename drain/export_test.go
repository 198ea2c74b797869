package drain

// SetAfterBindHook makes f run right after the socket file is created and
// before its mode is finalised, until restore is called.
func SetAfterBindHook(f func(path string)) (restore func()) {
	old := testHookAfterBind
	testHookAfterBind = f
	return func() { testHookAfterBind = old }
}
