"""Conformance suite fixtures: the behaviour suite's shared fixtures (behaviour_fixtures.py) for every test in
this folder. The recorded exchanges bring their own fresh server (test_exchanges.py)."""

from behaviour_fixtures import *  # noqa: F401,F403 - clients, databases, users, config and polling for test_behaviour_*.py
