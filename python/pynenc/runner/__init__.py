"""Runners: where and how an invocation's function is executed."""
