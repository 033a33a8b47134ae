"""Tests-only CPU stand-ins for OpenPCDet's compiled ops (see standin.py)."""
