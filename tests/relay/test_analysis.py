from __future__ import annotations

import csv
import io

import pytest

from relay.analysis import (
    CheckResult,
    Judgement,
    NextStep,
    ServerCounters,
    Verdict,
    judge,
    next_step,
    recent_window,
    window,
    with_checks,
)
from relay.manifest import Analysis

LIMITS = Analysis()  # 20 requests at least, 5% errors, 1000 ms at most
TOO_FEW = "; send more traffic, lengthen analysis.interval_seconds or lower analysis.min_requests"


def counters(requests: int, errors: int = 0, mean_ms: float = 100) -> ServerCounters:
    return ServerCounters(requests=requests, errors=errors, response_ms_total=requests * mean_ms)


@pytest.mark.parametrize(
    ("traffic", "analysis", "expected"),
    [
        pytest.param(
            ServerCounters(),
            LIMITS,
            Judgement(
                Verdict.INCONCLUSIVE,
                0,
                0.0,
                0.0,
                [
                    "only 0 requests reached the new version, fewer than the 20 needed to judge it"
                    + TOO_FEW
                ],
            ),
            id="no-traffic",
        ),
        pytest.param(
            counters(19, errors=19, mean_ms=5000),
            LIMITS,
            Judgement(
                Verdict.INCONCLUSIVE,
                19,
                1.0,
                5000.0,
                [
                    "only 19 requests reached the new version, fewer than the 20 needed to judge "
                    "it" + TOO_FEW
                ],
            ),
            id="below-the-minimum-even-if-all-fail",
        ),
        pytest.param(
            counters(1),
            Analysis(min_requests=2),
            Judgement(
                Verdict.INCONCLUSIVE,
                1,
                0.0,
                100.0,
                [
                    "only 1 request reached the new version, fewer than the 2 needed to judge it"
                    + TOO_FEW
                ],
            ),
            id="one-request",
        ),
        pytest.param(
            counters(20, errors=1, mean_ms=1000),
            LIMITS,
            Judgement(Verdict.SUCCESSFUL, 20, 0.05, 1000.0, []),
            id="just-at-both-limits",
        ),
        pytest.param(
            counters(100, errors=31),
            LIMITS,
            Judgement(
                Verdict.FAILED,
                100,
                0.31,
                100.0,
                ["error rate 31.0% is above the 5.0% limit (31 of 100 requests)"],
            ),
            id="errors-over-the-limit",
        ),
        pytest.param(
            counters(100, errors=1),
            Analysis(max_error_rate=0),
            Judgement(
                Verdict.FAILED,
                100,
                0.01,
                100.0,
                ["error rate 1.0% is above the 0.0% limit (1 of 100 requests)"],
            ),
            id="no-errors-allowed",
        ),
        pytest.param(
            counters(50, mean_ms=1500),
            LIMITS,
            Judgement(
                Verdict.FAILED,
                50,
                0.0,
                1500.0,
                ["mean response time 1500 ms is above the 1000 ms limit"],
            ),
            id="slow",
        ),
        pytest.param(
            ServerCounters(requests=20, response_ms_total=20_009),
            LIMITS,
            Judgement(
                Verdict.FAILED,
                20,
                0.0,
                1000.45,
                ["mean response time 1000.5 ms is above the 1000 ms limit"],
            ),
            id="just-over-the-time-limit",
        ),
        pytest.param(
            counters(200, errors=40, mean_ms=2500),
            LIMITS,
            Judgement(
                Verdict.FAILED,
                200,
                0.2,
                2500.0,
                [
                    "error rate 20.0% is above the 5.0% limit (40 of 200 requests)",
                    "mean response time 2500 ms is above the 1000 ms limit",
                ],
            ),
            id="both-reasons",
        ),
    ],
)
def test_judge(traffic: ServerCounters, analysis: Analysis, expected: Judgement) -> None:
    assert judge(traffic, analysis) == expected


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            ServerCounters(100, 2, 10_000),
            ServerCounters(150, 7, 20_000),
            ServerCounters(50, 5, 10_000),
            id="difference",
        ),
        pytest.param(
            ServerCounters(100, 2, 10_000),
            ServerCounters(100, 2, 10_000),
            ServerCounters(0, 0, 0),
            id="no-traffic",
        ),
        pytest.param(
            ServerCounters(500, 10, 50_000),
            ServerCounters(30, 1, 900),
            ServerCounters(30, 1, 900),
            id="counter-reset-means-a-new-server",
        ),
        pytest.param(
            ServerCounters(500, 10, 50_000),
            ServerCounters(600, 3, 60_000),
            ServerCounters(600, 3, 60_000),
            id="errors-reset",
        ),
        pytest.param(
            ServerCounters(2000, 0, 2000 * 50),
            ServerCounters(2100, 0, 2100 * 40),
            ServerCounters(100, 0, 100 * 40),
            id="falling-recent-average-uses-the-latest",
        ),
    ],
)
def test_window(before: ServerCounters, after: ServerCounters, expected: ServerCounters) -> None:
    assert window(before, after) == expected


# `show stat` of HAProxy 2.6.12 after 40 requests through a backend with two servers: `green`
# (a test server answering 500 to every 4th request and 404 to some others, in about 20 ms) and
# `blue` (weight 0, never used). Long lines are continued with a backslash.
SHOW_STAT = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,\
wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,\
lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,\
hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,\
cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,\
ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,\
check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,\
conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,\
cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,\
safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,\
agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,\
h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,\
h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,\
h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,\
h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,\
h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
fe_orders,FRONTEND,,,0,2,9986,40,4120,4858,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,40,0,40,,,,0,\
26,0,4,10,0,,40,40,40,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,40,40,40,0,0,0,0,,,0,0,,,,,,,0,,\
,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,40,40,4760,4738,0,0,
be_orders,green,0,0,0,1,,40,4120,4858,,0,,0,0,0,0,no check,10,1,0,,,2,,,1,3,1,,40,,2,40,,\
40,,,,0,26,0,4,10,0,,,,40,0,0,,,,,0,,,0,0,21,21,,,,,,,,,,,,127.0.0.1:28712,,http,,,,,,,,0,\
40,0,,,0,,0,0,21,21,0,0,0,0,1,10,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_orders,blue,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,0,1,0,,,2,,,1,3,2,,0,,2,0,,0,,,,0,0,0,\
0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:23999,,http,,,,,,,,0,0,0,,,0,,0,0,0,\
0,0,0,0,0,0,0,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
be_orders,BACKEND,0,0,0,1,999,40,4120,4858,0,0,,0,0,0,0,UP,10,1,0,,0,2,0,,1,3,0,,40,,1,40,\
,40,,,,0,26,0,4,10,0,,,,40,0,0,0,0,0,0,0,,,0,0,21,21,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,\
40,0,0,0,,,0,0,21,21,0,,,,,10,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,40,40,4738,4000,\
0,0,
"""


def show_stat_rows() -> dict[str, dict[str, str]]:
    """The rows of SHOW_STAT by server name, read as the router reads them."""
    reader = csv.DictReader(io.StringIO(SHOW_STAT.removeprefix("# ")))
    return {row["svname"]: row for row in reader}


def test_from_haproxy_on_a_real_row() -> None:
    rows = show_stat_rows()

    green = ServerCounters.from_haproxy(rows["green"])
    blue = ServerCounters.from_haproxy(rows["blue"])

    # 26 2xx + 4 4xx + 10 5xx; rtime 21 ms
    assert green == ServerCounters(requests=40, errors=10, response_ms_total=21 * 40)
    assert blue == ServerCounters(requests=0, errors=0, response_ms_total=0)
    assert judge(window(blue, green), Analysis()) == Judgement(
        Verdict.FAILED,
        40,
        0.25,
        21.0,
        ["error rate 25.0% is above the 5.0% limit (10 of 40 requests)"],
    )


def test_from_haproxy_counts_every_status_class_and_empty_fields_as_zero() -> None:
    row = {
        "hrsp_1xx": "1",
        "hrsp_2xx": "2",
        "hrsp_3xx": "3",
        "hrsp_4xx": "4",
        "hrsp_5xx": "5",
        "hrsp_other": "",
        "eresp": "",
        "econ": "",
        "wretr": "",
        "rtime": "",
    }

    assert ServerCounters.from_haproxy(row) == ServerCounters(15, 5, 0.0)


def test_attempts_a_canary_failed_without_an_answer_are_its_errors() -> None:
    """What HAProxy counted for a server that took every request and closed without an answer
    (measured: 20 GETs retried on the other slot, 5 POSTs answered 502 by HAProxy)."""
    row = {name: "0" for name in ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx")}
    row.update(hrsp_other="0", eresp="5", econ="0", wretr="20", rtime="0")

    counters = ServerCounters.from_haproxy(row)

    assert counters == ServerCounters(requests=25, errors=25, response_ms_total=0.0)
    assert judge(counters, Analysis(min_requests=10)).verdict == Verdict.FAILED


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"rtime": None},
            "field 'rtime' is missing from the HAProxy stats row; pass a server row of "
            "`show stat` read with its header line",
            id="missing",
        ),
        pytest.param(
            {"hrsp_5xx": "many"},
            "field 'hrsp_5xx' of the HAProxy stats row is 'many', not a number",
            id="not-a-number",
        ),
    ],
)
def test_from_haproxy_names_a_bad_field(change: dict[str, str | None], message: str) -> None:
    row = dict(show_stat_rows()["green"])
    for name, value in change.items():
        if value is None:
            del row[name]
        else:
            row[name] = value

    with pytest.raises(ValueError) as caught:
        ServerCounters.from_haproxy(row)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("verdict", "policy", "expected"),
    [
        (Verdict.SUCCESSFUL, "fail", NextStep("continue")),
        (Verdict.FAILED, "continue", NextStep("stop", "canary analysis failed at 10%: 5xx")),
        (Verdict.INCONCLUSIVE, "continue", NextStep("continue")),
        (
            Verdict.INCONCLUSIVE,
            "fail",
            NextStep("stop", "canary analysis inconclusive at 10%: 5xx"),
        ),
        (Verdict.INCONCLUSIVE, "pause", NextStep("ask", "5xx", 600)),
    ],
)
def test_the_environments_policy_decides_what_a_judged_step_leads_to(
    verdict: Verdict, policy: str, expected: NextStep
) -> None:
    analysis = Analysis(on_inconclusive=policy)  # type: ignore[arg-type]
    assert next_step(verdict, ["5xx"], 10, analysis, 3600, ask_cap=600) == expected
    assert next_step(verdict, ["5xx"], 10, analysis, 60, ask_cap=600).wait_seconds in (0, 60)


RELATIVE = Analysis(max_error_rate=0.5, max_error_rate_increase=0.05, max_response_ratio=1.5)


@pytest.mark.parametrize(
    ("canary", "stable", "analysis", "verdict", "says"),
    [
        pytest.param(
            counters(100, errors=40),
            counters(400, errors=160),
            LIMITS,
            Verdict.INCONCLUSIVE,
            "but so is the stable version's in the same window (40.0%: 160 of 400 requests)",
            id="a-shared-dependency-failing-is-not-the-canarys-fault",
        ),
        pytest.param(
            counters(100, errors=40),
            counters(400, errors=4),
            LIMITS,
            Verdict.FAILED,
            "error rate 40.0% is above the 5.0% limit (40 of 100 requests)",
            id="only-the-canary-fails",
        ),
        pytest.param(
            counters(100, errors=20),
            counters(400),
            RELATIVE,
            Verdict.FAILED,
            "error rate 20.0% is 20.0% above the stable version's 0.0% in the same window, more "
            "than the 5.0% allowed (analysis.max_error_rate_increase)",
            id="within-the-absolute-limit-but-worse-than-stable",
        ),
        pytest.param(
            counters(100, errors=60),
            counters(400, errors=200),
            RELATIVE,
            Verdict.FAILED,
            "10.0% above the stable version's 50.0%",
            id="both-above-the-limit-but-the-canary-much-worse",
        ),
        pytest.param(
            counters(100, errors=53),
            counters(400, errors=204),
            RELATIVE,
            Verdict.INCONCLUSIVE,
            "but so is the stable version's",
            id="both-above-the-limit-and-alike",
        ),
        pytest.param(
            counters(100, mean_ms=300),
            counters(400, mean_ms=100),
            RELATIVE,
            Verdict.FAILED,
            "mean response time 300 ms is 3.00 times the stable version's 100 ms in the same "
            "window, more than the 1.5 allowed (analysis.max_response_ratio)",
            id="slower-than-stable",
        ),
        pytest.param(
            counters(100, mean_ms=1500),
            counters(400, mean_ms=1400),
            LIMITS,
            Verdict.INCONCLUSIVE,
            "slowness that hits both versions is not blamed on the canary",
            id="both-slow",
        ),
        pytest.param(
            counters(100, mean_ms=140),
            counters(400, mean_ms=100),
            RELATIVE,
            Verdict.SUCCESSFUL,
            "",
            id="within-the-ratio",
        ),
        pytest.param(
            counters(100),
            counters(5),
            RELATIVE,
            Verdict.INCONCLUSIVE,
            "only 5 requests reached the stable version, fewer than the 20 needed to compare",
            id="relative-limits-need-a-stable-with-traffic",
        ),
        pytest.param(
            counters(100),
            counters(5),
            LIMITS,
            Verdict.SUCCESSFUL,
            "",
            id="absolute-limits-do-not",
        ),
        pytest.param(
            counters(100, errors=100),
            counters(400, errors=24),
            LIMITS,
            Verdict.FAILED,
            "error rate 100.0% is above the 5.0% limit (100 of 100 requests)",
            id="a-stable-slightly-over-the-limit-does-not-excuse-a-much-worse-canary",
        ),
        pytest.param(
            counters(100, mean_ms=5000),
            counters(400, mean_ms=1100),
            LIMITS,
            Verdict.FAILED,
            "mean response time 5000 ms is above the 1000 ms limit",
            id="nor-a-much-slower-one",
        ),
        pytest.param(
            counters(100, mean_ms=1),
            counters(400, mean_ms=0),
            RELATIVE,
            Verdict.SUCCESSFUL,
            "",
            id="a-stable-faster-than-a-millisecond-counts-as-one",
        ),
    ],
)
def test_judge_beside_the_stable_version(
    canary: ServerCounters, stable: ServerCounters, analysis: Analysis, verdict: Verdict, says: str
) -> None:
    judgement = judge(canary, analysis, stable)
    assert judgement.verdict == verdict
    assert says in "; ".join(judgement.reasons)
    assert judgement.stable == stable
    assert (judgement.reasons == []) == (verdict == Verdict.SUCCESSFUL)


def test_a_long_serving_stable_version_is_timed_by_its_latest_requests() -> None:
    """HAProxy's rtime is a recent average: 50,000 requests at 40 ms, then 50 more at 41 ms,
    would give 'window' a mean of 1041 ms; the stable version's window takes the latest 41."""
    before = ServerCounters(50_000, 10, 50_000 * 40.0)
    after = ServerCounters(50_050, 11, 50_050 * 41.0)
    assert window(before, after).mean_response_ms > 1000
    assert recent_window(before, after) == ServerCounters(50, 1, 50 * 41.0)


PASSED = Judgement(Verdict.SUCCESSFUL, 50, 0.0, 20.0)
TOO_FEW = Judgement(Verdict.INCONCLUSIVE, 3, 0.0, 20.0, ["only 3 requests"])
BAD = Judgement(Verdict.FAILED, 50, 0.5, 20.0, ["error rate 50.0% is above the 5.0% limit"])
OVER = CheckResult("p99", 1.5, max=1.0)
UNDER = CheckResult("success", 0.9, min=0.99)
WITHIN = CheckResult("p99", 0.4, max=1.0, min=0.1)
NO_VALUE = CheckResult("p99", None, max=1.0, problem="Prometheus at x could not be reached")


@pytest.mark.parametrize(
    ("judgement", "checks", "verdict", "reasons"),
    [
        (PASSED, [WITHIN], Verdict.SUCCESSFUL, []),
        (PASSED, [OVER], Verdict.FAILED, ["check 'p99': 1.5 is above its max 1"]),
        (PASSED, [UNDER], Verdict.FAILED, ["check 'success': 0.9 is below its min 0.99"]),
        (
            BAD,
            [OVER],
            Verdict.FAILED,
            ["check 'p99': 1.5 is above its max 1", "error rate 50.0% is above the 5.0% limit"],
        ),
        (TOO_FEW, [OVER], Verdict.FAILED, ["check 'p99': 1.5 is above its max 1"]),
        (
            PASSED,
            [NO_VALUE],
            Verdict.INCONCLUSIVE,
            ["check 'p99' has no value (Prometheus at x could not be reached)"],
        ),
        (
            TOO_FEW,
            [CheckResult("p99", None, max=1.0)],
            Verdict.INCONCLUSIVE,
            ["only 3 requests", "check 'p99' has no value (the query returned no data)"],
        ),
        (BAD, [NO_VALUE], Verdict.FAILED, ["error rate 50.0% is above the 5.0% limit"]),
    ],
)
def test_checks_can_only_make_a_verdict_worse(
    judgement: Judgement, checks: list[CheckResult], verdict: Verdict, reasons: list[str]
) -> None:
    judged = with_checks(judgement, checks)
    assert (judged.verdict, judged.reasons) == (verdict, reasons)
