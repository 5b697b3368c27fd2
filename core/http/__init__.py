"""ASGI plumbing shared by the app and its middleware: one body middleware, response headers
decided during a request, and the raw-ASGI error writer. Nothing here knows about routes."""
