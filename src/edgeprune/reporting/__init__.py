"""Reporting: the papers' figures (figures) and MLflow tracking (tracking)."""
