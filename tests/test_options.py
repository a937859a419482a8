import pytest

from convcorr.core.errors import ConfigError
from convcorr.core.options import parse_key_values, parse_value, split_key_value


def test_parse_value_literals_words_and_text():
    cases = {"3": 3, "0.5": 0.5, "-1e-3": -1e-3, "[1, 2]": [1, 2], "{'a': 1}": {"a": 1}, "'x'": "x",
             "true": True, "TRUE": True, "False": False, "none": None, "None": None, "null": None,
             "conv4": "conv4", "/data/voc": "/data/voc", " 7 ": 7, " conv4 ": "conv4", "": "", "1,2": (1, 2),
             "a=b": "a=b", "[1,": "[1,"}
    for text, want in cases.items():
        got = parse_value(text)
        assert got == want and type(got) is type(want), (text, got)


def test_split_key_value():
    assert split_key_value(" beta =0.01") == ("beta", "0.01")
    assert split_key_value("name=a=b") == ("name", "a=b")      # the first '=' splits
    assert split_key_value("x=") == ("x", "")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        split_key_value("novalue", "--set")
    with pytest.raises(ValueError, match="empty KEY"):
        split_key_value("=3")


def test_parse_key_values_of_a_spec():
    assert parse_key_values("step=4, bin=6.5,smooth=false,name=x") == {"step": 4, "bin": 6.5, "smooth": False,
                                                                       "name": "x"}
    assert parse_key_values("") == {} and parse_key_values("a=1,,") == {"a": 1}
    with pytest.raises(ValueError, match="features 'sift:step'.*KEY=VALUE"):
        parse_key_values("step", "features 'sift:step': option")
