"""Tests of the local kie.ai emulator (real processes on loopback, raw httpx)."""
