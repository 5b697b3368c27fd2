"""`nimbus cost`: what serving costs per platform, from measured throughput and dated prices.

prices (the dated price book) -> throughput (a bench result or a short measurement) -> model
(per-platform billing) -> render (tables, JSON, chart); breakeven is the reference chapter's
formula on its own inputs; command wires them to the CLI."""
