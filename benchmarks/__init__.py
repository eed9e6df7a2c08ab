"""The eventsrc benchmark: our figures next to raw nats-py, as ratios."""
