"""Replay, audit and verify the eventsrc event streams."""
