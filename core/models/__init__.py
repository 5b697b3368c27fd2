"""Model inspection: GGUF headers, memory estimates, platform fit."""
