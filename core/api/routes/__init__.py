"""HTTP routes: each parses its request, calls one use-case and returns its answer."""
