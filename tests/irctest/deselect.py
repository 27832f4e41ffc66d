"""
A pytest plugin for L{tests.irctest.run}: deselect the known failures by
their exact node ids (C{--deselect} takes prefixes, so deselecting
C{testTopicMode} would also drop C{testTopicModern}).
"""

import os

import pytest

VARIABLE = "CHATROUTE_IRCTEST_DESELECT"
"""The environment variable holding the node ids, one a line."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the items whose node id is one of C{$CHATROUTE_IRCTEST_DESELECT}."""
    known = set(filter(None, os.environ.get(VARIABLE, "").splitlines()))
    deselected = [item for item in items if item.nodeid in known]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.nodeid not in known]
