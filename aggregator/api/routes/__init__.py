"""One router per resource; ``aggregator.api.app.ROUTERS`` lists those served."""
