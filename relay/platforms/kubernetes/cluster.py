"""Talking to the Kubernetes API: server-side apply as field manager `relay`, and reads.

Everything Relay writes goes through `Cluster.apply`: server-side apply, never forced. So
applying the same objects again changes nothing (not even `resourceVersion`), and a field that
someone else changed since (`kubectl edit`, `kubectl scale`, another controller) is a 409
conflict that Relay reports - which fields, which manager - instead of silently taking back.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    ConflictError,
    DynamicApiError,
    NotFoundError,
    ResourceNotFoundError,
)
from kubernetes.dynamic.resource import Resource

from relay.errors import TerminalError, TransientError
from relay.platforms.kubernetes.objects import MANAGER, Obj

CONFLICT = (
    "{kind} {namespace}/{name}: {fields} changed by another field manager since Relay applied "
    "it; Relay did not overwrite it. To proceed: undo the manual change (or give the field back "
    "to Relay: kubectl apply --server-side --force-conflicts --field-manager={manager} with "
    "`relay render`'s output), or, to keep the change, write it into relay.yaml and deploy again"
)


class ApplyConflict(TerminalError):
    """Another field manager owns fields Relay would change; retrying cannot help."""


class Cluster:
    """One API server, through the dynamic client (any kind, CRDs included).

    Args:
        api_client: An authenticated `kubernetes.client.ApiClient` (see `tasks.kubernetes`).
    """

    def __init__(self, api_client: ApiClient) -> None:
        self.dynamic = DynamicClient(api_client)  # type: ignore[no-untyped-call]

    def resource(self, api_version: str, kind: str) -> Resource:
        found: Resource = self.dynamic.resources.get(api_version=api_version, kind=kind)
        return found

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the API knows the kind (e.g. the Gateway API CRDs are installed)."""
        try:
            self.resource(api_version, kind)
        except ResourceNotFoundError:
            return False
        return True

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply `obj`, not forced; returns the object as stored (or, with
        `dry_run`, as it would be stored: nothing changes).

        Raises:
            ApplyConflict: Another manager owns fields whose values `obj` changes.
            TransientError: The API server could not be reached or failed.
        """
        resource = self.resource(obj["apiVersion"], obj["kind"])
        try:
            stored = self.dynamic.server_side_apply(  # type: ignore[no-untyped-call]
                resource,
                body=obj,
                field_manager=MANAGER,
                force_conflicts=False,
                dry_run="All" if dry_run else None,
            )
        except ConflictError as exc:
            raise ApplyConflict(_conflict_message(obj, exc)) from None
        except DynamicApiError as exc:
            raise _api_error(f"applying {_what(obj)}", exc) from None
        return dict(stored.to_dict())

    def annotate(
        self, api_version: str, kind: str, namespace: str, name: str, notes: dict[str, str | None]
    ) -> bool:
        """Set (or, with None, remove) annotations of an object and touch nothing else: a JSON
        merge patch by a manager of its own (`relay-notes`), so Relay's applies, which never
        name these keys, neither conflict with them nor drop them. False when there is no
        such object."""
        try:
            self.resource(api_version, kind).patch(
                body={"metadata": {"annotations": notes}},
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
                field_manager=f"{MANAGER}-notes",
            )
        except NotFoundError:
            return False
        except DynamicApiError as exc:
            raise _api_error(f"annotating {kind} {namespace}/{name}", exc) from None
        return True

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            found = self.resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        except DynamicApiError as exc:
            raise _api_error(f"reading {kind} {namespace}/{name}", exc) from None
        return dict(found.to_dict())

    def list(self, api_version: str, kind: str, namespace: str, **selectors: str) -> list[Obj]:
        """Objects of a kind in a namespace; `label_selector=` / `field_selector=` filter."""
        try:
            found = self.resource(api_version, kind).get(namespace=namespace, **selectors)
        except DynamicApiError as exc:
            raise _api_error(f"listing {kind} in {namespace}", exc) from None
        return [dict(item) for item in found.to_dict().get("items", [])]

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self.resource(api_version, kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            return
        except DynamicApiError as exc:
            raise _api_error(f"deleting {kind} {namespace}/{name}", exc) from None

    def delete_with_dependents(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> None:
        """Delete an object and what it owns (a Job's pods) in the background."""
        try:
            self.resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Background"}
            )
        except NotFoundError:
            return
        except DynamicApiError as exc:
            raise _api_error(f"deleting {kind} {namespace}/{name}", exc) from None


def _what(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"


def _api_error(doing: str, exc: DynamicApiError) -> Exception:
    message = _status_message(exc) or str(exc.reason)
    text = f"{doing}: {exc.status} {message}"
    if exc.status in (400, 403, 422):  # a bad object or missing permission: fix, not retry
        return TerminalError(text)
    return TransientError(text)


def _status_message(exc: DynamicApiError) -> str:
    try:
        return str(json.loads(exc.body or "").get("message", ""))
    except (TypeError, ValueError):
        return ""


def _conflict_message(obj: Obj, exc: DynamicApiError) -> str:
    """The Status of a 409 lists one cause per field: 'conflict with "kubectl-edit" using
    apps/v1: .spec.replicas'."""
    try:
        causes: list[dict[str, Any]] = json.loads(exc.body or "")["details"]["causes"]
    except (TypeError, ValueError, KeyError):
        causes = []
    fields = [_cause(cause) for cause in causes] or [_status_message(exc) or "some fields"]
    meta = obj["metadata"]
    return CONFLICT.format(
        kind=obj["kind"],
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        fields="; ".join(fields),
        manager=MANAGER,
    )


def _cause(cause: dict[str, Any]) -> str:
    message = str(cause.get("message", ""))
    owner = message.split('"')[1] if message.count('"') >= 2 else "another manager"
    return f"{cause.get('field', '?')} (owned by {owner!r})"
