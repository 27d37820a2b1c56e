"""Phone-number validation shared by the server's SIP endpoints (§3.7).

The server validates ``transfer_to`` (REST ``/sip/transfer`` and WebSocket
``sip_transfer``) and both numbers of ``/sip/call`` with one rule: after trimming, the
value is non-empty, may start with a single ``+``, and is otherwise ASCII digits only.
There is no length limit. :func:`phone_number_problem` returns the server's exact detail
text, so the emulator can answer with it and the client can refuse the same inputs
before sending them. This module is sans-IO.
"""

from __future__ import annotations

__all__ = ["normalize_phone_number", "phone_number_problem"]


def phone_number_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid phone number, or ``None`` when it is.

    The texts are the server's, character for character; positions are 0-based
    character indexes in the *trimmed* value:

    - ``Phone number cannot be empty``
    - ``Phone number must contain at least one digit``
    - ``Invalid character '+' at position {n} - plus sign is only allowed at the
      beginning``
    - ``Invalid character '{c}' at position {n} - only digits (0-9) and optional
      leading '+' are allowed``
    """
    trimmed = value.strip()
    if not trimmed:
        return "Phone number cannot be empty"
    digits = 0
    for position, char in enumerate(trimmed):
        # str.isdigit() accepts non-ASCII digits ("٣"); the server does not.
        if "0" <= char <= "9":
            digits += 1
        elif char == "+":
            if position != 0:
                return (
                    f"Invalid character '+' at position {position} - "
                    "plus sign is only allowed at the beginning"
                )
        else:
            return (
                f"Invalid character '{char}' at position {position} - "
                "only digits (0-9) and optional leading '+' are allowed"
            )
    if digits == 0:
        return "Phone number must contain at least one digit"
    return None


def normalize_phone_number(value: str) -> str:
    """The form the server forwards to LiveKit: the trimmed number.

    Raises :class:`ValueError` carrying :func:`phone_number_problem`'s text when the
    number is invalid.
    """
    problem = phone_number_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value.strip()
