"""Webhooks: change events sent, signed, to HTTP endpoints through the job queue
(service.py), with SSRF checks (delivery.py). docs/automation.md describes them."""
