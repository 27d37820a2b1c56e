"""How an inbound call's session is planned and named."""

from __future__ import annotations

from pathlib import Path

from saynad.actors.plan import CallRecord, build_plan, child_for
from saynad.actors.supervisor import RestartPolicy
from saynad.app import failure_reason
from saynad.config import load_config
from saynad.errors import (
    ConnectionClosedError,
    HandshakeRejectedError,
    ReadyTimeoutError,
    TransportError,
)
from tests.support.samples import ENV, daemon_config


def test_an_inbound_call_ends_when_the_caller_leaves_whatever_the_template_says(
    tmp_path: Path,
) -> None:
    path = tmp_path / "saynad.yaml"
    path.write_text(
        daemon_config(
            max_duration_s=120,
            call_end="\n      end: {on_participant_disconnected: false, max_duration_s: 600}",
        )
    )
    config = load_config(path, env=ENV)
    spec = config.inbound_session("sip-EV_1", room_name="sip-+1555")
    assert spec.behaviours.end is not None
    assert spec.behaviours.end.on_participant_disconnected is False
    call = CallRecord(caller="+1555", callee="+1666", sip_headers={"x-a": "b"})
    plan = build_plan(spec, url="http://x", api_key=None, call=call, max_duration_s=120)
    assert plan.end.on_participant_disconnected is True
    assert plan.end.max_duration_s == 120  # the smaller of the template's and the hook's
    assert (plan.identity.caller, plan.identity.callee) == ("+1555", "+1666")
    assert plan.identity.sip_headers == {"x-a": "b"}
    child = child_for(spec)
    assert child.policy.restart is RestartPolicy.TEMPORARY
    assert child.origin == "inbound"
    # The always-on session of the same file keeps its own (false) default.
    lobby = build_plan(config.session("lobby"), url="http://x", api_key=None)
    assert lobby.end.on_participant_disconnected is False


def test_failure_reasons_are_a_small_fixed_set() -> None:
    assert failure_reason(TransportError("refused")) == "connect"
    assert failure_reason(HandshakeRejectedError(401, "no")) == "connect"  # type: ignore[call-arg]
    assert failure_reason(ReadyTimeoutError("slow")) == "ready_timeout"
    assert failure_reason(ExceptionGroup("g", [ConnectionClosedError(1011, "x")])) == (
        "connection_lost"
    )
    assert failure_reason(ValueError("bug")) == "error"
