"""Ingest: scan events from the gates to stored passages, verdicts, alerts and notifications.

``consumer`` (MQTT) → ``validate`` → ``tokens`` → ``lookup`` → ``verdicts``
(pure) → ``writer`` (one transaction per batch), orchestrated by
``pipeline``; ``denylist``, ``keyring`` and ``fleet_state`` keep the gates
and the dashboards in step.
"""
