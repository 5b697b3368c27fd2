"""Metrics and the request log: one catalog of names and units (catalog.py), one object that
turns what happened into measurements (telemetry.py), and the sinks that publish them:
Prometheus text at GET /metrics (prometheus.py, needs prometheus-client) and CloudWatch EMF
through Powertools on Lambda (emf.py). The JSON request log line is built in requestlog.py."""
