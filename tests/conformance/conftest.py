"""Conformance suite fixtures: the recorded exchanges and the fresh server they replay against."""
