"""The reliability suite: load, overload flood, schema fuzz, disconnect storm, soak, and an
API-key / rate-limit abuse set against a real `nimbus serve` (`make reliability`)."""
