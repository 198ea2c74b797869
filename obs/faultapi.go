package obs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sluice-dev/sluice/fault"
)

// FaultState is one fault point as the fault API reports it.
type FaultState struct {
	Name   string `json:"name"`
	Doc    string `json:"doc"`
	Action string `json:"action"` // "off" when the point is off
	Hits   uint64 `json:"hits"`   // times its action has fired since start
}

func faultState(p *fault.Point) FaultState {
	return FaultState{Name: p.Name(), Doc: p.Doc(), Action: p.Action().String(), Hits: p.Hits()}
}

// maxActionBody bounds a PUT /faults/{name} body.
const maxActionBody = 1 << 10

// MountFaultAPI mounts the run-time fault-point API on a:
//
//	GET    /faults         every point: [{"name","doc","action","hits"}], sorted by name
//	GET    /faults/{name}  one point
//	PUT    /faults/{name}  set its action; the body is the action, e.g. delay(5ms)
//	                       or off (or JSON {"action":"delay(5ms)"})
//	DELETE /faults/{name}  switch it off
//	DELETE /faults         switch every point off
//
// Answers are JSON: the new state of the point(s), or {"error": "..."} with
// 404 for an unknown point (the message lists the known ones), 400 for an
// action that does not parse. Every change is logged at info with the
// previous and new action and the caller's address.
func MountFaultAPI(a *Admin) {
	log := a.log.With(KeyComponent, "faults")
	a.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		all := fault.All()
		out := make([]FaultState, 0, len(all))
		for _, p := range all {
			out = append(out, faultState(p))
		}
		writeJSON(w, http.StatusOK, out)
	})
	a.HandleFunc("GET /faults/{name}", func(w http.ResponseWriter, r *http.Request) {
		if p, ok := lookupPoint(w, r); ok {
			writeJSON(w, http.StatusOK, faultState(p))
		}
	})
	a.HandleFunc("PUT /faults/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := lookupPoint(w, r)
		if !ok {
			return
		}
		spec, err := readAction(w, r)
		if err != nil {
			status := http.StatusBadRequest
			if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
				status = http.StatusRequestEntityTooLarge
			}
			writeError(w, status, err.Error())
			return
		}
		act, err := fault.ParseAction(spec)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		old := p.Swap(act)
		logChange(log, r, p.Name(), old, act)
		writeJSON(w, http.StatusOK, faultState(p))
	})
	a.HandleFunc("DELETE /faults/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := lookupPoint(w, r)
		if !ok {
			return
		}
		if old := p.Swap(nil); old != nil {
			logChange(log, r, p.Name(), old, nil)
		}
		writeJSON(w, http.StatusOK, faultState(p))
	})
	a.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		all := fault.All()
		out := make([]FaultState, 0, len(all))
		for _, p := range all {
			if old := p.Swap(nil); old != nil {
				logChange(log, r, p.Name(), old, nil)
			}
			out = append(out, faultState(p))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// lookupPoint finds the point named in the path, or answers 404 listing the
// known names.
func lookupPoint(w http.ResponseWriter, r *http.Request) (*fault.Point, bool) {
	name := r.PathValue("name")
	if p, ok := fault.Lookup(name); ok {
		return p, true
	}
	var names []string
	for _, p := range fault.All() {
		names = append(names, p.Name())
	}
	known := strings.Join(names, ", ")
	if known == "" {
		known = "(none registered)"
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("unknown fault point %q; known points: %s", name, known))
	return nil, false
}

// readAction reads a PUT body: the action as text, or JSON {"action": "..."}.
func readAction(w http.ResponseWriter, r *http.Request) (string, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxActionBody))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	s := strings.TrimSpace(string(body))
	if strings.HasPrefix(s, "{") {
		var req struct {
			Action string `json:"action"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return "", fmt.Errorf("body: bad JSON: %w", err)
		}
		s = strings.TrimSpace(req.Action)
	}
	if s == "" {
		return "", errors.New("empty action: send e.g. delay(5ms), delay(1ms,10ms), error(0.1), close(1)*3, error(1)@10/s, or off")
	}
	return s, nil
}

func logChange(log *slog.Logger, r *http.Request, name string, old, act *fault.Action) {
	log.Info("fault point changed", KeyPoint, name, KeyAction, act.String(), "was", old.String(),
		KeyRemote, r.RemoteAddr, "user_agent", r.UserAgent(), "method", r.Method)
}

// MountFlightAPI mounts POST /debug/flight/dump on a: it dumps the flight
// recording now (reason "admin", ignoring the rate limit) and answers
// {"path": "..."}. With f == nil it answers 503 saying the recorder is not
// enabled, and 503 as well once f is closed; 500 if the dump fails.
func MountFlightAPI(a *Admin, f *FlightRecorder) {
	log := a.log.With(KeyComponent, "flight")
	a.HandleFunc("POST /debug/flight/dump", func(w http.ResponseWriter, r *http.Request) {
		path, err := f.DumpNow(ReasonAdmin)
		switch {
		case errors.Is(err, ErrFlightDisabled):
			writeError(w, http.StatusServiceUnavailable, "flight recorder is not enabled in this process: enable it in the configuration and restart sluice")
			return
		case errors.Is(err, ErrFlightClosed):
			writeError(w, http.StatusServiceUnavailable, "flight recorder is shut down (sluice is stopping)")
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, "flight recorder dump failed: "+err.Error())
			return
		}
		log.Info("flight recording dumped on request", KeyPath, path, KeyRemote, r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]string{"path": path})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
