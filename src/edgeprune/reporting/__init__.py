"""Reporting: the papers' figures (figures), the deployment chooser's Pareto tables and figures
(pareto) and MLflow tracking (tracking)."""
