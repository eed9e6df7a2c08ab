"""eventsrc.commands."""
