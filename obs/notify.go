package obs

import (
	"fmt"
	"net"
	"os"
)

// NotifyReady tells systemd that the service is ready (sd_notify
// "READY=1"), when it runs as a Type=notify unit: NOTIFY_SOCKET names the
// datagram socket to write to (a path, or "@name" in the abstract
// namespace). Without NOTIFY_SOCKET it does nothing and returns nil.
func NotifyReady() error { return notify("READY=1") }

// NotifyStopping tells systemd that the service is stopping.
func NotifyStopping() error { return notify("STOPPING=1") }

func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("systemd notify socket %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("systemd notify socket %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	return nil
}
