"""How Relay reads AWS's errors, the same way for every service it calls.

* Denied (the caller's identity may not do it, or is not recognised): a `TerminalError` saying
  what to grant; retrying with the same credentials cannot help.
* Throttled, or AWS failing (a 5xx, a throttling code, no answer at all): a `TransientError`,
  which the tasks retry (`tasks.support.retry.only_transient`).
* Anything else AWS answered (a 4xx: a bad name, a missing resource): a `TerminalError`; the
  same call would get the same answer. Callers that give a code a meaning of their own (a
  missing secret, a repository that exists already) look at `code_of` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.errors import TerminalError, TransientError

__all__ = ["DENIED", "THROTTLED", "call", "classify", "code_of"]

DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServerException",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
    }
)
GRANT = "grant the pipeline's role the policy of `relay iam-policy SERVICE ENV --pipeline`"


def code_of(exc: ClientError) -> str:
    """The error code AWS answered with (`AccessDeniedException`, ...), or ''."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def classify(
    exc: ClientError | BotoCoreError, doing: str, grant: str = GRANT
) -> TerminalError | TransientError:
    """The Relay error for an AWS failure while `doing` something (see the module's rules);
    `grant` says what permission a denied call needs."""
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{doing}: {type(exc).__name__}: {exc}")
    code = code_of(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in DENIED:
        return TerminalError(f"{doing}: not allowed ({code}); {grant}")
    if code in THROTTLED or status >= 500:
        return TransientError(f"{doing}: {code or exc}")
    return TerminalError(f"{doing}: {code}: {_message(exc)}" if code else f"{doing}: {exc}")


def call(method: Callable[..., Any], doing: str, grant: str = GRANT, **kwargs: Any) -> Any:
    """`method(**kwargs)` (a boto3 client's), its failures read by `classify`."""
    try:
        return method(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise classify(exc, doing, grant) from None


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
