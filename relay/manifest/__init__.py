"""The release manifest, `relay.yaml`: what an application's services are and where they go.

A complete example, every default written out, is docs/relay.yaml. `load_manifest` reads the
file and reports every problem in it at once (`ManifestError`), each as
`<file>: <field.path>: <what is wrong>; <what to write instead>`.

One job per module: limits.py (defaults and limits), messages.py (the problems' words),
fields.py (field types and their validators), ports.py (the docker platform's host ports),
models.py (`Manifest` and its parts), errors.py (pydantic's errors reworded), checks.py (what
spans parts, and the files on disk), load.py (`load_manifest`, `parse_manifest`).
"""

from __future__ import annotations

from relay.manifest.fields import Command
from relay.manifest.limits import PRODUCTION
from relay.manifest.load import load_manifest, parse_manifest
from relay.manifest.models import (
    AllowedFinding,
    Analysis,
    Approval,
    CloudWatch,
    CloudWatchMetrics,
    Compliance,
    Environment,
    ImageScan,
    Kubernetes,
    Manifest,
    Packages,
    PrometheusCheck,
    PrometheusMetrics,
    ResourceAmounts,
    Resources,
    Sast,
    Security,
    Service,
    SkippedCheck,
    default_environments,
)
from relay.manifest.ports import ServicePorts

__all__ = [
    "Analysis",
    "Kubernetes",
    "ResourceAmounts",
    "Resources",
    "Approval",
    "Command",
    "Environment",
    "Manifest",
    "Sast",
    "Security",
    "Service",
    "ServicePorts",
    "default_environments",
    "load_manifest",
    "parse_manifest",
    # also imported from relay.manifest by the rest of Relay
    "PRODUCTION",
    "AllowedFinding",
    "CloudWatch",
    "CloudWatchMetrics",
    "Compliance",
    "ImageScan",
    "Packages",
    "PrometheusCheck",
    "PrometheusMetrics",
    "SkippedCheck",
]
