"""Cloudflare edge adapter: a JavaScript module worker (``worker.js``) that guards and forwards to
the inference origin. The only Python here generates the worker's limits from ``core``."""
