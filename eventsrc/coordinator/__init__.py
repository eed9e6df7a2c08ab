"""eventsrc.coordinator."""
