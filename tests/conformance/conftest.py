"""Conformance suite fixtures: the recorded exchanges and the fresh server they replay against."""

from behaviour_fixtures import *  # noqa: F401,F403 - clients, databases, users, config and polling for test_behaviour_*.py
