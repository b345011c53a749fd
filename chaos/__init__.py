"""`make chaos`: the whole stack as real processes, clients checking every room's offsets, and
faults injected while messages flow (see chaos/__main__.py and docs/reliability.md)."""
