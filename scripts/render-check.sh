#!/usr/bin/env bash
# render-check.sh REPORT.html OUT.png
#
# Renders a `sluice load --report` page in headless Chromium, saves a
# screenshot to OUT.png, and exits non-zero unless the charts were drawn:
# the DOM after load must hold the throughput chart's <svg> with at least
# one series <path>, and the page's own check (data-paths-drawn on <body>,
# set by its inline script from the lengths the browser laid out) must
# count at least one drawn line. Chromium runs with networking features off;
# the page needs none.
#
# Installs Debian's chromium package when it is missing and we are root.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 REPORT.html OUT.png" >&2
	exit 2
fi
report=$1
out=$2
if [ ! -f "$report" ]; then
	echo "render-check: $report: no such file" >&2
	exit 2
fi

if ! command -v chromium >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "render-check: installing chromium" >&2
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >&2
	else
		echo "render-check: chromium is not installed (as root: apt-get update && apt-get install -y chromium)" >&2
		exit 2
	fi
fi

abs=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_chromium() {
	local profile
	profile=$(mktemp -d "$work/profile.XXXXXX")
	timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update \
		--disable-sync --user-data-dir="$profile" --window-size=1200,900 \
		"$@" "file://$abs"
}

run_chromium --screenshot="$out" >"$work/shot.log" 2>&1 || {
	echo "render-check: chromium failed to take the screenshot:" >&2
	cat "$work/shot.log" >&2
	exit 1
}
if [ ! -s "$out" ]; then
	echo "render-check: no screenshot written to $out" >&2
	cat "$work/shot.log" >&2
	exit 1
fi

run_chromium --dump-dom >"$work/dom.html" 2>"$work/dom.log" || {
	echo "render-check: chromium failed to dump the DOM:" >&2
	cat "$work/dom.log" >&2
	exit 1
}

fail=0
check() { # check DESCRIPTION PATTERN
	if ! grep -Eq "$2" "$work/dom.html"; then
		echo "render-check: FAIL: $1 (no match for /$2/ in the DOM)" >&2
		fail=1
	fi
}
check "the throughput chart is in the DOM" '<svg [^>]*class="chart"[^>]*id="chart-throughput"'
check "a chart has a series line with points" '<g class="series" data-series="[^"]+"><path d="M[0-9.]+ [0-9.]+ L'
drawn=$(grep -Eo 'data-paths-drawn="[0-9]+"' "$work/dom.html" | grep -Eo '[0-9]+' || true)
if [ -z "$drawn" ] || [ "$drawn" -lt 1 ]; then
	echo "render-check: FAIL: the browser laid out no chart line (data-paths-drawn=${drawn:-missing})" >&2
	fail=1
fi
if [ "$fail" -ne 0 ]; then
	exit 1
fi
series=$(grep -Eo '<g class="series"' "$work/dom.html" | wc -l)
markers=$(grep -Eo '<g class="marker"' "$work/dom.html" | wc -l)
echo "render-check: OK: $series series, $drawn lines drawn, $markers markers; screenshot $out"
