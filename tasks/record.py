"""Record stage: what a run did, as Prefect artifacts people read in the UI."""

from __future__ import annotations

import re
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE


def artifact_key(*parts: str) -> str:
    """Artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(app: str, release: dict[str, Any], subject: str, author: str) -> str:
    service, environment = release["service"], release["environment"]
    stages = "\n".join(
        f"| {name} | {seconds:.2f} s |" for name, seconds in release["stage_seconds"].items()
    )
    built = "built and pushed" if release["built"] else "reused (same content already built)"
    deployed = "switched to this image" if release["changed"] else "already serving this image"
    markdown = f"""# {service} → {environment}

| | |
|---|---|
| commit | `{release["commit"]}` — {subject} ({author}) |
| tree | `{release["tree"]}` |
| image | `{release["image"]}` ({built}) |
| deploy | {deployed} |
| serves at | [{release["url"]}]({release["url"]}) |

| stage | time |
|---|---|
{stages}
"""
    create_markdown_artifact(
        key=artifact_key(app, service, environment, "summary"),
        markdown=markdown,
        description=f"{service} {release['commit'][:12]} in {environment}",
    )
    return markdown
