"""The aggregator's SQL store: schema, engines, migrations, data functions."""
