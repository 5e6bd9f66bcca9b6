"""Push, pull and delete notifications (issue #5): an outbox written with each change,
delivered at least once, in order, to every configured endpoint. See docs/events.md."""
