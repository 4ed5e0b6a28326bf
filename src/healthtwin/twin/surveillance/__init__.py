"""Outbreak detection: the classical aberration detectors (EARS, Farrington, CUSUM, GLR).

Each method module works on plain numpy arrays of counts and returns its outputs per monitored time
point, so the same code serves the reference parity checks (reference_io, cli), the accuracy bench
(bench/detection.py) and the scheduled job over the twin's series (job.py).
"""
