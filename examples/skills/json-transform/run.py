#!/usr/bin/env python3
"""json-transform: payload {"data": any, "select"?: [str]} -> the data with dotted keys."""

import json
import sys


def flatten(value, prefix, out):
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        out[prefix] = value
        return
    for key, child in items:
        flatten(child, f"{prefix}.{key}" if prefix else str(key), out)


payload = json.load(sys.stdin)
if not isinstance(payload, dict) or "data" not in payload:
    sys.exit('json-transform: the payload needs "data"')
flat = {}
flatten(payload["data"], "", flat)
select = payload.get("select")
if select is not None:
    missing = [key for key in select if key not in flat]
    if missing:
        sys.exit(f"json-transform: no such keys: {', '.join(missing)}")
    flat = {key: flat[key] for key in select}
print(json.dumps(flat))
