"""Pure pieces of the campaign: which new failure gets minimized, and the rates reported."""

from fuzz.triage import primary_failure
from fuzz.model import Failure


def f(kind: str, sig: str | None = None) -> Failure:
    return Failure(kind=kind, signature=sig or kind, message=kind)


def test_a_dead_target_outranks_the_errors_it_caused():
    failures = [f("server_error"), f("stream_error_event"), f("target_dead"), f("transport")]
    assert primary_failure(failures).kind == "target_dead"


def test_hangs_outrank_server_errors_and_wrong_answers_come_last():
    assert primary_failure([f("schema_violation"), f("server_error"), f("hang")]).kind == "hang"
    assert primary_failure([f("schema_violation"), f("server_error")]).kind == "server_error"


def test_ties_keep_the_first_and_nothing_new_means_none():
    first, second = f("schema_violation", "a"), f("tool_call_invalid", "b")
    assert primary_failure([first, second]) is first
    assert primary_failure([]) is None


def test_report_gives_the_rate_over_the_run_and_while_sending():
    from fuzz.report import Summary, render_report

    text = render_report(Summary(seed=1, endpoint="http://x", requests=100, elapsed_s=50.0, fuzz_s=10.0))
    assert "2.00 requests/s over the run, 10.00 while sending (10s)" in text
