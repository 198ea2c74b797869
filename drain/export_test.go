package drain

// SetAfterBindHook makes f run right after the socket file is created and
// before its mode is finalised, until restore is called.
func SetAfterBindHook(f func(path string)) (restore func()) {
	old := testHookAfterBind
	testHookAfterBind = f
	return func() { testHookAfterBind = old }
}

// SetReceivedHook makes f run each time an acked connection has handed a
// DATA frame to the committer, until restore is called.
func SetReceivedHook(f func()) (restore func()) {
	old := testHookReceived
	testHookReceived = f
	return func() { testHookReceived = old }
}

// SetAckHook makes f run each time an ACK frame was written, until restore
// is called.
func SetAckHook(f func()) (restore func()) {
	old := testHookAck
	testHookAck = f
	return func() { testHookAck = old }
}

// SetAfterWriteHook makes f run in the committer after a group commit's
// output write and fsync and before its journal commit, until restore is
// called.
func SetAfterWriteHook(f func()) (restore func()) {
	old := testHookAfterWrite
	testHookAfterWrite = f
	return func() { testHookAfterWrite = old }
}
