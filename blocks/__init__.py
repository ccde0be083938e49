"""Prefect blocks: saved, UI-editable connection settings that hand out Relay's clients."""

from blocks.registry import ContainerRegistry

__all__ = ["ContainerRegistry"]
