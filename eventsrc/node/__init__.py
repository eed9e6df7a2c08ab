"""eventsrc.node."""
