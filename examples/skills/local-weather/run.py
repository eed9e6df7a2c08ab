#!/usr/bin/env python3
"""local-weather: payload {"city": str} -> the city's forecast from data/forecasts.json."""

import json
import sys
from pathlib import Path

payload = json.load(sys.stdin)
city = payload.get("city") if isinstance(payload, dict) else None
if not isinstance(city, str):
    sys.exit('local-weather: the payload needs "city" (a string)')
forecasts = json.loads((Path(__file__).parent / "data" / "forecasts.json").read_text())
match = {name.casefold(): name for name in forecasts}.get(city.strip().casefold())
if match is None:
    sys.exit(f"local-weather: no forecast for {city!r}; known: {', '.join(sorted(forecasts))}")
print(json.dumps({"city": match, **forecasts[match], "source": "local file"}))
