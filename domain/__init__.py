"""The collections domain: pure decisions, no Temporal, no I/O, no clock.

Everything here receives ``now`` from its caller, so the same code runs inside
workflows (deterministically) and in tests.
"""
