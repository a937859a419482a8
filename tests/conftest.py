import os

import pytest

os.environ.setdefault("CONVCORR_QUIET", "1")

from convcorr.runtime.paths import shared_root  # noqa: E402


@pytest.fixture(scope="session")
def shared():
    root = shared_root()
    if root is None:
        pytest.skip("shared asset folder (../shared) not available")
    return root
