"""relay.aws.errors: one reading of AWS's failures for every service Relay calls (pure)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from relay.aws.errors import call, classify
from relay.errors import TerminalError, TransientError


def client_error(code: str, status: int = 400, message: str = "no") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "DoIt",
    )


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            client_error("AccessDeniedException", 403),
            TerminalError,
            "doing it: not allowed (AccessDeniedException); grant",
        ),
        (client_error("AccessDenied", 403), TerminalError, "not allowed (AccessDenied)"),
        (client_error("UnrecognizedClientException", 400), TerminalError, "not allowed"),
        (client_error("ExpiredTokenException", 400), TerminalError, "not allowed"),
        (client_error("ThrottlingException", 400), TransientError, "doing it: ThrottlingException"),
        (client_error("TooManyRequestsException", 429), TransientError, "TooManyRequests"),
        (client_error("Whatever", 503), TransientError, "doing it: Whatever"),
        (
            client_error("ValidationException", 400, "bad name"),
            TerminalError,
            "doing it: ValidationException: bad name",
        ),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            TransientError,
            "doing it: EndpointConnectionError",
        ),
    ],
)
def test_every_failure_is_read_one_way(error: Exception, kind: type, text: str) -> None:
    judged = classify(error, "doing it")  # type: ignore[arg-type]
    assert type(judged) is kind and text in str(judged)


def test_a_denied_call_says_what_to_grant() -> None:
    judged = classify(client_error("AccessDenied", 403), "reading", "grant ecr:DescribeImages")
    assert str(judged) == "reading: not allowed (AccessDenied); grant ecr:DescribeImages"


def test_call_raises_the_reading() -> None:
    def fail(**_: object) -> None:
        raise client_error("ThrottlingException")

    with pytest.raises(TransientError, match="listing: ThrottlingException"):
        call(fail, "listing", Name="x")
    assert call(lambda **kw: kw["Name"], "naming", Name="x") == "x"
