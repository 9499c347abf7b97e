"""Service-level objectives over the daemon's own request records: windows, budgets, burn-rate alerts, reports."""
