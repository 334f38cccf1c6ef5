"""
Fixtures shared by the unit tests: C{data_path} runs a relay test on each
data path (L{tests.relaykit.data_path}).
"""

from tests.relaykit import data_path

__all__ = ["data_path"]
