"""Serving on several ranks (torchrun): the process group, the control channel, rank 0's coordination."""
