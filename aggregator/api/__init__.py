"""The aggregator's HTTP API (FastAPI): health and metrics now, officers' screens later."""
