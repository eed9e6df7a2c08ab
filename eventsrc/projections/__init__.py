"""eventsrc.projections."""
