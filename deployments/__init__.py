"""How work starts: the `relay` command, prefect.yaml deployments, and (later) webhooks."""
