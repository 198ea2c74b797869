package obs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// AdminURL turns an admin address (host:port, or an http:// URL) into the
// base URL of the admin API, without a trailing slash.
func AdminURL(addr string) (string, error) {
	if addr == "" || addr == "off" {
		return "", errors.New("no admin address: sluice's admin server is off (admin.listen); set it, or pass --admin HOST:PORT")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("admin address %q: want host:port or http://host:port", addr)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// AdminError describes a non-200 answer of the admin API.
func AdminError(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Sprintf("%s: %s", resp.Status, e.Error)
	}
	if resp.StatusCode == http.StatusNotFound {
		return resp.Status + " (this sluice does not serve that endpoint: is it an older version?)"
	}
	return fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}
