"""Helpers shared by the tests and the benchmark harness: a fake engine, the Lambda Runtime API
stand-in and event builders, and readers of Modal's declared objects."""
