"""JUnit XML for replay results, so CI systems show one test per bundle."""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fuzz.replay import ReplayResult

SUITE = "vlfuzz.replay"
# Characters XML 1.0 cannot carry at all; server messages may contain them.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def testcase_name(result: ReplayResult) -> str:
    return result.bundle_path.name if result.bundle_path is not None else "(unknown bundle)"


def junit_xml(results: Sequence[ReplayResult], suite: str = SUITE) -> bytes:
    """A <testsuites> document: failure for STILL_FAILING, error for ERROR."""
    from fuzz.replay import Verdict

    counts = {v: sum(r.verdict is v for r in results) for v in Verdict}
    ts = ET.Element("testsuite", name=suite, tests=str(len(results)),
                    failures=str(counts[Verdict.STILL_FAILING]),
                    errors=str(counts[Verdict.ERROR]), skipped="0",
                    time=f"{sum(r.elapsed_s for r in results):.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=suite, name=_clean(testcase_name(r)),
                           time=f"{r.elapsed_s:.3f}")
        detail = _clean("\n".join([
            f"bundle: {r.bundle_path}", f"signature: {r.signature}",
            f"reproduced: {r.failing_runs}/{r.runs}",
            "observed: " + ("; ".join(r.observed_signatures) or "(none)"),
            f"triage: {r.triage or 'none recorded'}", r.message]))
        if r.verdict is Verdict.STILL_FAILING:
            ET.SubElement(tc, "failure", type="STILL_FAILING",
                          message=_clean(f"still failing {r.failing_runs}/{r.runs}: "
                                         f"{r.signature}")).text = detail
        elif r.verdict is Verdict.ERROR:
            ET.SubElement(tc, "error", type="ERROR",
                          message=_clean(r.message[:500])).text = detail
        else:
            ET.SubElement(tc, "system-out").text = detail
    root = ET.Element("testsuites")
    root.append(ts)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(results: Sequence[ReplayResult], path: Path, suite: str = SUITE) -> None:
    """Write atomically: a CI step reading the file never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(junit_xml(results, suite))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
