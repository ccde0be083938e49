"""Judging a canary from its traffic beside the stable version's: pure functions over request
counters, no I/O.

The router counts each server's (slot's) responses. Two readings of both versions' counters,
taken at the start and the end of a canary step, give the step's `window` of each; `judge`
turns them into a `Verdict` against the environment's `Analysis` limits:

* SUCCESSFUL - enough requests, and the canary is within every limit;
* FAILED - enough requests, and the canary exceeds a limit that the stable version does not
  exceed in the same window, or is worse than the stable version by more than a relative
  limit allows (every reason is named);
* INCONCLUSIVE - too few requests to say, or the canary exceeds a limit that the stable version
  exceeds too (a shared cause is not the canary's fault); `Analysis.on_inconclusive` decides
  what happens next.

Comparing in the same window is Kayenta's way (Spinnaker's canary judge): a failing shared
dependency, or a burst of load, shows in both versions and so blames neither. A verdict is a
judgement of the new version, not an error of Relay's: reading the counters can fail (and be
retried), but that is not a FAILED verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from relay.manifest import Analysis

__all__ = [
    "CheckResult",
    "NextStep",
    "Traffic",
    "Readings",
    "next_step",
    "Judgement",
    "ServerCounters",
    "Verdict",
    "judge",
    "judge_alarms",
    "recent_window",
    "window",
    "with_alarms",
    "with_checks",
]

# The response-status fields of a row of HAProxy's `show stat`; together they count every
# HTTP response the server gave.
_HAPROXY_RESPONSES = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
# Attempts the server failed without an HTTP answer: a broken response (HAProxy's own 502 to
# the client, not in `hrsp_5xx`), a refused connection, and an attempt HAProxy then retried on
# the other slot (the client never saw it fail; the server did fail it).
_HAPROXY_FAILED_ATTEMPTS = ("eresp", "econ", "wretr")

TOO_FEW_REQUESTS = (
    "only {requests} request{s} reached the new version, fewer than the {minimum} needed to "
    "judge it; send more traffic, lengthen analysis.interval_seconds or lower "
    "analysis.min_requests"
)
ERROR_RATE_TOO_HIGH = (
    "error rate {rate:.1%} is above the {limit:.1%} limit ({errors} of {requests} requests)"
)
TOO_SLOW = "mean response time {mean} ms is above the {limit} ms limit"
ERROR_RATE_ABOVE_STABLE = (
    "error rate {rate:.1%} is {points:.1%} above the stable version's {stable:.1%} in the same "
    "window, more than the {limit:.1%} allowed (analysis.max_error_rate_increase)"
)
SLOWER_THAN_STABLE = (
    "mean response time {mean} ms is {ratio:.2f} times the stable version's {stable} ms in the "
    "same window, more than the {limit:g} allowed (analysis.max_response_ratio)"
)
ERRORS_SHARED = (
    "error rate {rate:.1%} is above the {limit:.1%} limit, but so is the stable version's in the "
    "same window ({stable:.1%}: {errors} of {requests} requests), and the canary's is within "
    "{tolerance:.1%} of it: errors that hit both versions (a shared dependency?) are not blamed "
    "on the canary (analysis.max_error_rate_increase sets how much worse it may be)"
)
SLOWNESS_SHARED = (
    "mean response time {mean} ms is above the {limit} ms limit, but so is the stable "
    "version's in the same window ({stable} ms), and the canary's is within {tolerance:g} times "
    "it: slowness that hits both versions is not blamed on the canary "
    "(analysis.max_response_ratio sets how much slower it may be)"
)
TOO_FEW_STABLE = (
    "only {requests} request{s} reached the stable version, fewer than the {minimum} needed to "
    "compare the canary with it (analysis.max_error_rate_increase, max_response_ratio); send "
    "more traffic or lengthen analysis.interval_seconds"
)
ALARM_FIRING = "CloudWatch alarm {name!r} is in ALARM"


@dataclass(frozen=True)
class ServerCounters:
    """Cumulative counters of one server (a slot of one service) since it started.

    Attributes:
        requests: HTTP responses given, of any status.
        errors: 5xx responses among them.
        response_ms_total: Sum of their response times in milliseconds, for averaging.
    """

    requests: int = 0
    errors: int = 0
    response_ms_total: float = 0.0

    @property
    def mean_response_ms(self) -> float:
        return self.response_ms_total / self.requests if self.requests else 0.0

    @staticmethod
    def from_haproxy(row: Mapping[str, str]) -> ServerCounters:
        """The counters of one server row of HAProxy's `show stat` CSV.

        `requests` is the sum of the `hrsp_*` fields and of the attempts the server failed
        without an answer (`eresp`, `econ`, `wretr`), `errors` is `hrsp_5xx` plus those
        failed attempts: a canary that drops connections is failing even when HAProxy hides
        it from clients by retrying on the stable version. HAProxy keeps no
        sum of response times, only `rtime`: a running average over about the last 1024
        requests, in whole milliseconds. `response_ms_total` is `rtime * requests`, an
        approximation: close for a young server such as a canary, rougher the more requests
        the server has served (see `window`). Empty fields count as 0.

        Raises:
            ValueError: When a field is missing or not a number, naming it.
        """
        responses = {name: _haproxy_int(row, name) for name in _HAPROXY_RESPONSES}
        failed = sum(_haproxy_int(row, name) for name in _HAPROXY_FAILED_ATTEMPTS)
        requests = sum(responses.values()) + failed
        return ServerCounters(
            requests=requests,
            errors=responses["hrsp_5xx"] + failed,
            response_ms_total=float(_haproxy_int(row, "rtime") * requests),
        )


def _haproxy_int(row: Mapping[str, str], name: str) -> int:
    if name not in row:
        raise ValueError(
            f"field {name!r} is missing from the HAProxy stats row; pass a server row of "
            "`show stat` read with its header line"
        )
    value = (row[name] or "0").strip()
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"field {name!r} of the HAProxy stats row is {value!r}, not a number"
        ) from None


@dataclass(frozen=True)
class Readings:
    """Both versions' counters read at one moment: the canary's, and the stable version's when
    there is one. Two readings make a window of each (`window`)."""

    canary: ServerCounters
    stable: ServerCounters | None = None


def window(before: ServerCounters, after: ServerCounters) -> ServerCounters:
    """What a server did between two readings of its counters.

    A counter that went down means the server was replaced (or the router restarted) between
    the readings, so `after` alone is the window. If only the response-time total went down
    (HAProxy's `rtime` is a recent average, see `ServerCounters.from_haproxy`), the window's
    mean is taken to be `after`'s, the most recent average there is.
    """
    if after.requests < before.requests or after.errors < before.errors:
        return after
    requests = after.requests - before.requests
    response_ms_total = after.response_ms_total - before.response_ms_total
    if response_ms_total < 0:
        response_ms_total = after.mean_response_ms * requests
    return ServerCounters(
        requests=requests,
        errors=after.errors - before.errors,
        response_ms_total=response_ms_total,
    )


def recent_window(before: ServerCounters, after: ServerCounters) -> ServerCounters:
    """`window` for a server that has served long (the stable version): its requests and errors
    between the readings, and the mean response time of its latest requests (HAProxy's `rtime`
    at the second reading). The difference of two `rtime x requests` products is meaningless
    once thousands of requests lie behind both."""
    counted = window(before, after)
    return replace(counted, response_ms_total=after.mean_response_ms * counted.requests)


class Verdict(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Judgement:
    """A verdict on a window of the new version's traffic, with the figures and reasons behind it.

    `reasons` is empty for SUCCESSFUL and says, for people, why otherwise. `stable` is the
    stable version's traffic in the same window, when it was read.
    """

    verdict: Verdict
    requests: int
    error_rate: float
    mean_response_ms: float
    reasons: list[str] = field(default_factory=list)
    stable: ServerCounters | None = None


def _rate(counters: ServerCounters) -> float:
    return counters.errors / counters.requests if counters.requests else 0.0


def judge(
    canary: ServerCounters, analysis: Analysis, stable: ServerCounters | None = None
) -> Judgement:
    """Judge the new version by its traffic in one window, beside the stable version's traffic
    in the same window when there is one (see the module docstring).

    A limit the canary exceeds fails it, unless the stable version exceeds it too in the same
    window and the canary is no worse than the relative limit allows: then the cause is shared
    (a dependency, the load) and the step is inconclusive. Relative limits need a stable
    version with at least `min_requests` of its own; without one they cannot be checked, and
    the step is inconclusive rather than passed.
    """
    requests = canary.requests

    def judgement(verdict: Verdict, reasons: list[str]) -> Judgement:
        return Judgement(verdict, requests, _rate(canary), canary.mean_response_ms, reasons, stable)

    if requests < analysis.min_requests:
        reason = TOO_FEW_REQUESTS.format(
            requests=requests, s="" if requests == 1 else "s", minimum=analysis.min_requests
        )
        return judgement(Verdict.INCONCLUSIVE, [reason])
    base = stable if stable is not None and stable.requests >= analysis.min_requests else None
    errors, slowness = _errors(canary, base, analysis), _slowness(canary, base, analysis)
    if errors.failures or slowness.failures:
        return judgement(Verdict.FAILED, errors.failures + slowness.failures)
    if errors.shared or slowness.shared:
        return judgement(Verdict.INCONCLUSIVE, errors.shared + slowness.shared)
    relative = analysis.max_error_rate_increase is not None or analysis.max_response_ratio
    if relative and base is None:
        seen = stable.requests if stable is not None else 0
        reason = TOO_FEW_STABLE.format(
            requests=seen, s="" if seen == 1 else "s", minimum=analysis.min_requests
        )
        return judgement(Verdict.INCONCLUSIVE, [reason])
    return judgement(Verdict.SUCCESSFUL, [])


# Without a relative limit, how much worse than the stable version a canary may be and still
# share the blame for a limit both exceed: the error-rate limit itself, in points, and twice its
# mean response time.
IMPLICIT_RATIO = 2.0
# HAProxy gives response times in whole milliseconds: a faster stable version reads 0.
_MEAN_FLOOR_MS = 1.0


@dataclass(frozen=True)
class _Compared:
    """One measure (errors, or response time) of the canary beside the stable version: the
    reasons it fails, or why a limit it exceeds is not blamed on it."""

    failures: list[str]
    shared: list[str]


def _errors(canary: ServerCounters, base: ServerCounters | None, analysis: Analysis) -> _Compared:
    rate, increase = _rate(canary), analysis.max_error_rate_increase
    failures: list[str] = []
    gap = rate - _rate(base) if base is not None else None
    if gap is not None and increase is not None and gap > increase:
        failures.append(
            ERROR_RATE_ABOVE_STABLE.format(rate=rate, stable=rate - gap, points=gap, limit=increase)
        )
    if rate <= analysis.max_error_rate:
        return _Compared(failures, [])
    tolerance = increase if increase is not None else analysis.max_error_rate
    shared_cause = base is not None and _rate(base) > analysis.max_error_rate
    if base is not None and gap is not None and shared_cause and gap <= tolerance and not failures:
        shared = ERRORS_SHARED.format(
            rate=rate,
            stable=_rate(base),
            errors=base.errors,
            requests=base.requests,
            limit=analysis.max_error_rate,
            tolerance=tolerance,
        )
        return _Compared([], [shared])
    failures.append(
        ERROR_RATE_TOO_HIGH.format(
            rate=rate, limit=analysis.max_error_rate, errors=canary.errors, requests=canary.requests
        )
    )
    return _Compared(failures, [])


def _slowness(canary: ServerCounters, base: ServerCounters | None, analysis: Analysis) -> _Compared:
    mean, limit = canary.mean_response_ms, analysis.max_response_ratio
    failures: list[str] = []
    ratio = mean / max(base.mean_response_ms, _MEAN_FLOOR_MS) if base is not None else None
    if base is not None and ratio is not None and limit is not None and ratio > limit:
        failures.append(
            SLOWER_THAN_STABLE.format(
                mean=_ms(mean), stable=_ms(base.mean_response_ms), ratio=ratio, limit=limit
            )
        )
    if mean <= analysis.max_response_ms:
        return _Compared(failures, [])
    tolerance = limit if limit is not None else IMPLICIT_RATIO
    slow_too = base is not None and base.mean_response_ms > analysis.max_response_ms
    if base is not None and ratio is not None and slow_too and ratio <= tolerance and not failures:
        shared = SLOWNESS_SHARED.format(
            mean=_ms(mean),
            stable=_ms(base.mean_response_ms),
            limit=analysis.max_response_ms,
            tolerance=tolerance,
        )
        return _Compared([], [shared])
    failures.append(TOO_SLOW.format(mean=_ms(mean), limit=analysis.max_response_ms))
    return _Compared(failures, [])


def with_alarms(judgement: Judgement, alarm_states: Mapping[str, str]) -> Judgement:
    """The judgement once the environment's CloudWatch alarms (`analysis.cloudwatch_alarms`,
    name -> state) are counted: any alarm in ALARM fails the step, whatever the counters say.

    The alarms watch what the canary's own counters cannot (its dependents' errors, business
    metrics, the whole fleet's latency), so they can only make a verdict worse: OK and
    INSUFFICIENT_DATA leave it as it was. The failing alarms come first among the reasons; a
    counter failure's reasons stay, an inconclusive one's are dropped (the alarm decided).
    """
    firing = [name for name, state in alarm_states.items() if state == "ALARM"]
    if not firing:
        return judgement
    kept = judgement.reasons if judgement.verdict == Verdict.FAILED else []
    reasons = [ALARM_FIRING.format(name=name) for name in firing] + kept
    return replace(judgement, verdict=Verdict.FAILED, reasons=reasons)


@dataclass(frozen=True)
class CheckResult:
    """One `analysis.prometheus.checks` query's value in a window; None when it had none
    (`problem` says why: no series, or the query failed)."""

    name: str
    value: float | None
    max: float | None = None
    min: float | None = None
    problem: str = ""

    def failure(self) -> str:
        """Why the value breaks a limit; "" when it does not (or there is none)."""
        if self.value is None:
            return ""
        if self.max is not None and self.value > self.max:
            return f"check {self.name!r}: {self.value:g} is above its max {self.max:g}"
        if self.min is not None and self.value < self.min:
            return f"check {self.name!r}: {self.value:g} is below its min {self.min:g}"
        return ""


def with_checks(judgement: Judgement, checks: Sequence[CheckResult]) -> Judgement:
    """The judgement once the environment's own queries are counted: one over its limit fails
    the step (its reason first, as an alarm's); one without a value makes a passing step
    inconclusive, saying which. Like alarms, they can only make a verdict worse."""
    failed = [f for check in checks if (f := check.failure())]
    if failed:
        kept = judgement.reasons if judgement.verdict == Verdict.FAILED else []
        return replace(judgement, verdict=Verdict.FAILED, reasons=failed + kept)
    missing = [
        f"check {c.name!r} has no value ({c.problem or 'the query returned no data'})"
        for c in checks
        if c.value is None
    ]
    if not missing or judgement.verdict == Verdict.FAILED:
        return judgement
    reasons = judgement.reasons if judgement.verdict == Verdict.INCONCLUSIVE else []
    return replace(judgement, verdict=Verdict.INCONCLUSIVE, reasons=reasons + missing)


@dataclass(frozen=True)
class Traffic:
    """Both versions' requests in one window, as a metrics source (`source`, for people) gave
    them. `canary` is None when the source had nothing for it: `unavailable` says why when the
    source could not be asked (unreachable, a query refused). `checks`: the environment's own
    queries, where the source has them (Prometheus)."""

    source: str
    canary: ServerCounters | None
    stable: ServerCounters | None = None
    unavailable: str = ""
    checks: tuple[CheckResult, ...] = ()

    def missing(self) -> str:
        """Why there is nothing to judge the canary by."""
        no_data = f"{self.source} has no request data for the canary in this window"
        return self.unavailable or no_data


NO_COUNTERS = (
    "no request metrics for this canary (kubernetes has no router counters) and no alarms; set "
    "analysis.metrics to cloudwatch or prometheus (with their queries), or "
    "analysis.cloudwatch_alarms"
)
ALARM_NO_DATA = "CloudWatch alarm {name!r} has insufficient data"


def judge_alarms(alarm_states: Mapping[str, str] | None) -> Judgement:
    """A canary step judged by CloudWatch alarms alone, where there are no request counters.

    Any alarm in ALARM fails it; all OK passes it; otherwise (no alarms configured, or some
    with insufficient data and none firing) it is inconclusive, and `on_inconclusive` decides.
    """
    states = dict(alarm_states or {})
    firing = [ALARM_FIRING.format(name=n) for n, s in states.items() if s == "ALARM"]
    if firing:
        return Judgement(Verdict.FAILED, 0, 0.0, 0.0, firing)
    if not states:
        return Judgement(Verdict.INCONCLUSIVE, 0, 0.0, 0.0, [NO_COUNTERS])
    no_data = [ALARM_NO_DATA.format(name=n) for n, s in states.items() if s != "OK"]
    verdict = Verdict.INCONCLUSIVE if no_data else Verdict.SUCCESSFUL
    return Judgement(verdict, 0, 0.0, 0.0, no_data)


def _ms(value: float) -> str:
    """`1500.0` -> `"1500"`, `1000.44` -> `"1000.4"`: no rounding down onto the limit."""
    return f"{value:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class NextStep:
    """What a canary step's judgement leads to: go on, stop (and roll back), or ask a person
    while the traffic stays split (`wait_seconds` at most)."""

    action: Literal["continue", "stop", "ask"]
    reason: str = ""
    wait_seconds: int = 0


def next_step(
    verdict: Verdict,
    reasons: list[str],
    weight: int,
    analysis: Analysis,
    approval_timeout: int,
    ask_cap: int,
) -> NextStep:
    """The environment's policy for a judged step: a failure stops; an inconclusive step
    follows `on_inconclusive` (continue, fail, or pause: ask through the approval rules, for
    no longer than `ask_cap` or the approval's own timeout)."""
    why = "; ".join(reasons)
    if verdict == Verdict.FAILED:
        return NextStep("stop", f"canary analysis failed at {weight}%: {why}")
    if verdict != Verdict.INCONCLUSIVE or analysis.on_inconclusive == "continue":
        return NextStep("continue")
    if analysis.on_inconclusive == "fail":
        return NextStep("stop", f"canary analysis inconclusive at {weight}%: {why}")
    return NextStep("ask", why, min(ask_cap, approval_timeout))
