"""The web dashboard: pages, a JSON API, live updates and time travel over a projection,
with Prometheus metrics at ``/metrics``; served by every coordinator and by
``eventsrc dashboard``."""
