"""The transparency log: its hashes, signed notes, checkpoints, tiles, proofs and witnesses (RFC 9162, C2SP)."""
