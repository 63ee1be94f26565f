"""The dashboards' HTTP layer: FastAPI routes and access control (``routes``)."""
