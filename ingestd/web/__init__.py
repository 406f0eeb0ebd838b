"""The web side: the status page, its JSON API and the metrics for Prometheus."""
