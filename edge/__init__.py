"""The kiemdich edge agent (runs beside a gate camera on a Pi-class device)."""

__version__ = "0.1.0"
