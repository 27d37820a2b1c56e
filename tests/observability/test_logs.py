"""Logging setup: redaction, and a log pipe that goes away never stops the daemon."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import structlog

from saynad.observability.logs import configure_logging, register_secrets


def test_secrets_are_redacted_by_key_and_by_value() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    register_secrets(["s3cr3t-value-123"])
    structlog.get_logger("t").info("hello", api_key="abc", detail="token s3cr3t-value-123 seen")
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["api_key"] == "***"
    assert line["detail"] == "token *** seen"


def test_a_closed_log_pipe_does_not_crash_the_process() -> None:
    code = (
        "from saynad.observability.logs import configure_logging\n"
        "import structlog\n"
        "configure_logging('info', 'json')\n"
        "log = structlog.get_logger('t')\n"
        "for i in range(20000):\n"
        "    log.info('line', i=i)\n"
        "import sys; sys.stderr.write('survived')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.read(100)
    proc.stdout.close()  # the reader goes away, like `saynad run | head`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"survived" in err
