"""Benchmarks of dagster-kie against the local kie.ai emulator and a real local S3 server.

``./dev bench`` (``python -m bench``) runs every contender for N = 100 and 1,000 requests and writes
``bench/RESULTS.md``. Not part of the test suite: nothing here is a timed assertion.
"""
