"""Compression operations. Every op registers itself in `registry` when its module is imported."""
