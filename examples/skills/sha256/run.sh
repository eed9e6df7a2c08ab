#!/bin/sh
# sha256: payload {"text": str} on stdin -> {"sha256": hex, "bytes": n} on stdout.
set -eu
text_file=$(mktemp)
trap 'rm -f "$text_file"' EXIT
python3 -c '
import json, sys
payload = json.load(sys.stdin)
text = payload.get("text") if isinstance(payload, dict) else None
if not isinstance(text, str):
    sys.exit("sha256: the payload needs \"text\" (a string)")
sys.stdout.buffer.write(text.encode())
' > "$text_file"
digest=$(sha256sum < "$text_file" | cut -d' ' -f1)
size=$(wc -c < "$text_file" | tr -d ' ')
printf '{"sha256": "%s", "bytes": %s}\n' "$digest" "$size"
