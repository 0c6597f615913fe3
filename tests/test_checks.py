import pytest

from vggbook.checks import ClaimFailed, check, status


def test_check_prints_pass_or_fails_the_chapter(capsys):
    check("two is even", 2 % 2 == 0, detail="n=2")
    assert capsys.readouterr().out == "PASS two is even (n=2)\n"
    with pytest.raises(ClaimFailed, match="^FAIL three is even$"):
        check("three is even", 3 % 2 == 0)


def test_status_follows_the_condition():
    assert status(True) == "reproduced" and status(False) == "not reproduced"
    assert status(False, "exact", "differs") == "differs"
