#!/usr/bin/env python3
"""word-count: payload {"text": str} on stdin -> {"lines", "words", "chars"} on stdout."""

import json
import sys

payload = json.load(sys.stdin)
text = payload.get("text") if isinstance(payload, dict) else None
if not isinstance(text, str):
    sys.exit('word-count: the payload needs "text" (a string)')
# wc counts newline characters; a last line without one still counts for people.
lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
print(json.dumps({"lines": lines, "words": len(text.split()), "chars": len(text)}))
