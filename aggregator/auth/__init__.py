"""Officer accounts, roles and scopes, sessions, login rate limit, privacy audit log.

- :mod:`~aggregator.auth.model`: ``Officer`` and ``Scope``, what an account may see;
- :mod:`~aggregator.auth.passwords`: argon2id hashes and password rules;
- :mod:`~aggregator.auth.accounts`: create, change, authenticate accounts;
- :mod:`~aggregator.auth.sessions`: server-side sessions (cookie and Bearer);
- :mod:`~aggregator.auth.ratelimit`: failed logins per username and address;
- :mod:`~aggregator.auth.login`: one login attempt, start to finish;
- :mod:`~aggregator.auth.audit`: ``record_read`` and the audit viewer's query;
- :mod:`~aggregator.auth.deps`: FastAPI dependencies (``CurrentOfficer``, ``require_roles``);
- :mod:`~aggregator.auth.device_credentials`: gate devices' MQTT credentials and the broker;
- :mod:`~aggregator.auth.cli`: ``kiemdich officers ...``.
"""
