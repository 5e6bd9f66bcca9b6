"""``wharf check`` (issue #18): the configuration validated, then every dependency it
names reached, with a table of what works and what does not."""
