"""Kernel wrappers: one thin, checked Python entry per compiled op, with its pure-Paddle reference."""
