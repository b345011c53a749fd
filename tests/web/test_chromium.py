"""The web client's tests need Debian's Chromium: without it they fail, saying how to get it."""

from pathlib import Path

import pytest

from tests.web.conftest import require_chromium


def test_a_missing_chromium_fails_and_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        require_chromium(tmp_path / "chromium")


def test_an_installed_chromium_is_used_where_it_is(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.touch()
    assert require_chromium(browser) == browser
