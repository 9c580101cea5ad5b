#!/bin/sh
# Regenerates docs/report.png: a periorbital session with the spray valve sticking closed at pulse 200,
# its report, and a screenshot of the report in headless Chromium (Debian's chromium package; run as root,
# hence --no-sandbox). Usage: sh docs/make_report_screenshot.sh   (from the repository's root)
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/faults.toml" <<'TOML'
[[fault]]
device = "spray"
kind = "valve_stuck_closed"
after_pulses = 200
TOML
.venv/bin/plasmactl run examples/plans/periorbital.toml --faults "$work/faults.toml" --out "$work/run" -q || true
.venv/bin/plasmactl report "$work/run"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$work/profile" --hide-scrollbars \
    --window-size=1280,3000 --screenshot="$PWD/docs/report.png" "file://$work/run/report.html"
echo "wrote docs/report.png"
