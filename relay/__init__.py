"""Relay: CI/CD for fleets of interdependent microservices.

This package is the domain: the release manifest, the dependency graph, deployment strategies,
analysis and adapters for real systems. It never imports Prefect; `flows/`, `tasks/` and
`blocks/` build on it.
"""
