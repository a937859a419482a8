from click.testing import CliRunner

from convcorr.cli import _parse_overrides, cli


def test_parse_overrides_types():
    o = _parse_overrides(("a=3", "b=0.5", "c=[1, 2]", "d=true", "e=False", "f=None", "g=conv4", "h=/data/voc"))
    assert o == {"a": 3, "b": 0.5, "c": [1, 2], "d": True, "e": False, "f": None, "g": "conv4", "h": "/data/voc"}


def test_cli_rf_and_errors():
    r = CliRunner().invoke(cli, ["rf", "--backbone", "alexnet"])
    assert r.exit_code == 0 and "conv4" in r.output and "131" in r.output
    r = CliRunner().invoke(cli, ["experiment", "table1", "--set", "nope=1"])
    assert r.exit_code != 0 and "no option 'nope'" in r.output
    r = CliRunner().invoke(cli, ["experiment", "table1", "--set", "novalue"])
    assert r.exit_code != 0 and "KEY=VALUE" in r.output
    r = CliRunner().invoke(cli, ["backbones"])
    assert "alexnet" in r.output and "efficientnet_lite0" in r.output


def test_headline_table():
    from convcorr.cli import headline_table

    md = "# T\n\n## Configuration\n\n| a | b |\n|---|---|\n\n## Results\n\ntext\n\n| m | v |\n|---|---|\n| x | 1 |\n\nafter"
    assert headline_table(md) == "_Results_\n\n| m | v |\n|---|---|\n| x | 1 |"


def test_headline_table_prefers_intervals_and_adds_paired_differences():
    from convcorr.cli import headline_table

    md = ("# T\n\n## Data (real photos)\n\n| c | n |\n|---|---|\n\n## Points\n\n| m | v |\n|---|---|\n| x | 1 |\n\n"
          "## PCK with 95% intervals\n\n| m | v |\n|---|---|\n| x | 1 [0, 2] |\n\n## Paired differences (same)\n\n"
          "| d | v |\n|---|---|\n| a - b | +1 [-1, 2] |\n")
    out = headline_table(md)
    assert out.startswith("_PCK with 95% intervals_") and "| x | 1 [0, 2] |" in out
    assert "_Paired differences (same)_" in out and "| c | n |" not in out and "| x | 1 |" not in out
