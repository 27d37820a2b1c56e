"""Test tools that ship with saynad: the fault proxy (usable by users' own tests too)."""
