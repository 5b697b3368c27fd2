"""nimbus-llm core: cloud-agnostic settings, engine, API and CLI."""

__version__ = "0.1.0"
