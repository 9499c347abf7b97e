"""Shipping records to the Elastic stack: templates, the shipper, SLO queries and Kibana dashboards."""
