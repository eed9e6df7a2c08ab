"""The week-5 module layout for messaging: ``eventsrc.communication.task_messaging``."""
