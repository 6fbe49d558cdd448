from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from market_data_services.app.cli import main
from market_data_services.app.commands._progress import ProgressBar
from market_data_services.ingest.layouts import LAYOUTS, PLUGIN_GROUP
from market_data_services.ingest.layouts import base as layouts_base
from market_data_services.storage import create_engine, ticks
from tests.conftest import SAMPLE_DATA
from tests.databases import DatabaseFactory
from tests.plugins import install_distribution

SUNDAY = SAMPLE_DATA / "forex_ticks" / "lean_fxcm" / "eurusd" / "20140504_eurusd_tick_quote.csv.gz"


def count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(select(func.count()).select_from(ticks)).scalar_one()
    engine.dispose()
    return value


def test_ingest_prints_a_summary_and_stores_the_ticks(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code = main(
        [
            "ingest",
            "ticks",
            str(SUNDAY),
            "--symbol",
            "EUR/USD",
            "--layout",
            "lean",
            "--tz",
            "UTC-05:00",
            "--db",
            database_url,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "1 files, 8,025 rows: 8,025 ticks accepted (8,025 new, 0 already stored)" in out
    assert count(database_url) == 8_025


def test_a_file_that_is_not_ticks_is_reported_and_the_other_files_load_with_exit_1(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\nworld\n")
    code = main(
        ["ingest", "ticks", str(SUNDAY), str(notes), "--symbol", "EUR/USD", "--db", database_url]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.strip().splitlines() == [
        f"failed: {notes}: not a tick file: the first line 'hello' is neither a "
        "header 'timestamp,bid,ask[,volume][,symbol]' (plain) nor LEAN rows "
        "'ms_since_midnight,bid,ask' (lean)"
    ]
    assert "8,025 ticks accepted" in captured.out
    assert count(database_url) == 8_025


def test_ingest_rejections_are_listed_with_file_and_line_and_exit_1(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("timestamp,bid,ask\n1699999000000,1.1,1.2\n1699999001000,-1,1.2\n")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert main(["ingest", "ticks", str(path), "--symbol", "X", "--db", database_url]) == 1
    captured = capsys.readouterr()
    assert f"rejected: {path}:3: price must be > 0, got bid -1.0 ask 1.2" in captured.err
    assert "rejected by reason: non_positive_price 1" in captured.out
    assert count(database_url) == 1


def test_missing_path_and_bad_zone_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "ticks", str(tmp_path / "nope.csv"), "--symbol", "X", "--db", url]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert (
        main(["ingest", "ticks", str(SUNDAY), "--symbol", "X", "--tz", "Mars/Base", "--db", url])
        == 2
    )
    assert "unknown time zone 'Mars/Base'" in capsys.readouterr().err


@pytest.mark.postgres
def test_ingest_refuses_a_postgres_database_without_schema(
    database_factory: DatabaseFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = database_factory.postgres_url()
    code = main(["ingest", "ticks", str(SUNDAY), "--symbol", "X", "--db", database_url])
    assert code == 2
    assert "run `mds db upgrade --db" in capsys.readouterr().err


def test_progress_bar_draws_on_a_terminal_and_stays_silent_otherwise() -> None:
    terminal = io.StringIO()
    bar = ProgressBar(4, unit="files", stream=terminal, enabled=True, min_interval=0)
    bar.update(1, "a.csv")
    bar.update(4, "d.csv")
    bar.close()
    assert "\r[######..................] 1/4 files  a.csv" in terminal.getvalue()
    assert "[########################] 4/4 files  d.csv" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")
    pipe = io.StringIO()
    quiet = ProgressBar(4, unit="files", stream=pipe)
    quiet.update(4)
    quiet.close()
    assert pipe.getvalue() == ""


def test_the_readme_ingest_example_runs_as_written(tmp_path: Path) -> None:
    """`mds ingest ticks ../shared/data/... --db sqlite:///mds.sqlite`, from the repo root.

    The repository's sample of that file stands in for ../shared/data (same layout and
    bytes), so the command runs as written in a clone with nothing beside it.
    """
    folder = SAMPLE_DATA / "forex_ticks" / "lean_fxcm" / "nzdusd"
    work = tmp_path / "repo"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SAMPLE_DATA)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "market_data_services",
            "ingest",
            "ticks",
            "../shared/data/forex_ticks/lean_fxcm/nzdusd/20140504_nzdusd_tick_quote.csv.gz",
            "--symbol",
            "NZD/USD",
            "--layout",
            "lean",
            "--tz",
            "UTC-05:00",
            "--db",
            "sqlite:///mds.sqlite",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert folder.is_dir()
    assert count(f"sqlite:///{work / 'mds.sqlite'}") == 21_018


ORDERBOOK = SAMPLE_DATA / "orderbook"
IG = SAMPLE_DATA / "sentiment" / "ig_client_sentiment.csv.gz"


def test_ingest_dom_prints_a_summary_of_the_books(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--db", database_url]) == 0
    capsys.readouterr()
    path = ORDERBOOK / "bybit_2024-12-01_XRPUSDT_ob500.data.gz"
    assert main(["ingest", "dom", str(path), "--db", database_url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "1 files, 50 rows: 50 snapshots accepted (50 new, 0 already stored); 0 rejected; "
        "0 crossed and 0 locked books; from 2024-12-01T00:00:00.691Z to 2024-12-01T00:00:05.490Z"
    ]


def test_ingest_dom_reports_a_one_sided_file_with_its_line_and_nothing_usable_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    path = ORDERBOOK / "binance_btcusdt-depth-snap.csv.gz"
    assert main(["ingest", "dom", str(path), "--db", url]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"rejected: {path}:2: BTCUSDT at 2022-11-01T23:49:39.146Z: bids only (100 levels), "
        "no asks: one side is not a book"
    ]
    assert "rejected by reason: one_sided 1" in captured.out


def test_ingest_dom_of_a_file_that_is_not_books_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("name,age\n")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "dom", str(notes), "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"failed: {notes}: not an order-book file: the first line")
    assert err.endswith("mds ingest dom: no usable order-book files")


def test_ingest_sentiment_reads_the_ig_export_in_the_given_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "sentiment", str(IG), "--tz", "UTC+02:00", "--db", url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "1 files, 87 rows: 87 readings accepted (87 new, 0 already stored); 0 rejected; "
        "from 2021-02-14T10:46:55.000Z to 2021-02-14T10:53:43.000Z"
    ]


def test_ingest_sentiment_of_a_tick_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "sentiment", str(SUNDAY), "--db", url]) == 2
    assert "not a sentiment file" in capsys.readouterr().err


def _ingest_sunday(url: str, *extra: str) -> int:
    return main(
        [
            "ingest",
            "ticks",
            str(SUNDAY),
            "--symbol",
            "EUR/USD",
            "--layout",
            "lean",
            "--tz",
            "UTC-05:00",
            "--no-progress",
            *extra,
        ]
        + (["--db", url] if url else [])
    )


def test_reject_crossed_comes_from_the_config_file_too(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mds.toml"
    config.write_text("[ingest]\nreject_crossed = true\n")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert _ingest_sunday(database_url, "--config", str(config)) == 1  # some rejected
    out = capsys.readouterr().out
    crossed = int(out.split("rejected by reason: crossed ", 1)[1].split()[0].replace(",", ""))
    assert crossed > 0  # FXCM's Sunday reopen has crossed quotes; the file said reject them
    assert count(database_url) == 8_025 - crossed


def test_reject_crossed_from_the_environment_and_database_from_the_config_file(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "mds.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    monkeypatch.delenv("MDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("MDS_INGEST_REJECT_CROSSED", "true")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert _ingest_sunday("", "--config", str(config)) == 1  # some rejected
    assert "rejected by reason: crossed" in capsys.readouterr().out
    assert 0 < count(database_url) < 8_025


def test_by_default_crossed_quotes_are_kept_and_counted(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MDS_INGEST_REJECT_CROSSED", raising=False)
    assert main(["db", "upgrade", "--db", database_url]) == 0
    assert _ingest_sunday(database_url) == 0
    assert count(database_url) == 8_025


def test_a_bad_config_value_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mds.toml"
    config.write_text('[ingest]\nreject_crossed = "sometimes"\n')
    assert _ingest_sunday("sqlite:///" + str(tmp_path / "x.sqlite"), "--config", str(config)) == 2
    assert "ingest.reject_crossed" in capsys.readouterr().err


COMPACT_DATES = {
    "ticks": ("t.csv", "timestamp,bid,ask\n20140501,1.1,1.2\n", "timestamp", ["--symbol", "X"]),
    "dom": (
        "b.jsonl",
        '{"symbol": "X", "ts": 20140501, "bids": [[1.0, 1.0]], "asks": [[1.1, 1.0]]}\n',
        "ts",
        [],
    ),
    "sentiment": (
        "s.csv",
        "timestamp,symbol,long_pct,short_pct\n20140501,X,40,60\n",
        "timestamp",
        [],
    ),
}


@pytest.mark.parametrize("kind", list(COMPACT_DATES))
def test_ingest_of_compact_dates_exits_2_naming_file_line_column_and_what_they_look_like(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, content, column, extra = COMPACT_DATES[kind]
    path = tmp_path / name
    path.write_text(content)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    capsys.readouterr()
    assert main(["ingest", kind, str(path), *extra, "--db", url]) == 2
    line = 1 if kind == "dom" else 2
    noun = {"ticks": "tick", "dom": "order-book", "sentiment": "sentiment"}[kind]
    assert capsys.readouterr().err.splitlines() == [
        f"failed: {path}:{line}: {column} 20140501 read as epoch s (auto) is "
        "1970-08-22, before 1990-01-01; looks like a YYYYMMDD date: write it as 2014-05-01",
        f"mds ingest {kind}: no usable {noun} files",
    ]
    assert count(url) == 0


def test_ingest_of_epoch_seconds_read_as_ms_exits_2_and_as_s_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("timestamp,bid,ask\n1398902400,1.1,1.2\n1398902401,1.1,1.2\n")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    args = ["ingest", "ticks", str(path), "--symbol", "X", "--db", url]
    assert main([*args, "--time-unit", "ms"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"failed: {path}:2: timestamp 1398902400 read as epoch ms is 1970-01-17, "
        "before 1990-01-01; looks like epoch s: use --time-unit s",
        "mds ingest ticks: no usable tick files",
    ]
    assert main([*args, "--time-unit", "s"]) == 0
    assert "from 2014-05-01T00:00:00.000Z to 2014-05-01T00:00:01.000Z" in capsys.readouterr().out
    assert count(url) == 2


def _readme_example() -> dict[str, str]:
    """The code blocks of the README's "Adding a file layout" section by language."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Adding a file layout\n", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    return {block.split("\n", 1)[0]: block.split("\n", 1)[1] for block in blocks}


def _install_layout_plugin(folder: Path, module: str, source: str, entry: str) -> None:
    install_distribution(folder, module=module, source=source, group=PLUGIN_GROUP, entry=entry)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for plugins; the registry as it was comes back after the test."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(layouts_base, "_plugin_problems", None)
    for kind in LAYOUTS:
        monkeypatch.setitem(LAYOUTS, kind, dict(LAYOUTS[kind]))
    yield folder
    for name in [n for n in sys.modules if n.startswith("plugin_")]:
        del sys.modules[name]


def test_a_layout_installed_as_a_plugin_loads_its_files(
    database_url: str,
    tmp_path: Path,
    plugins: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = _readme_example()
    entry = next(line for line in example["toml"].splitlines() if line.startswith("dukascopy ="))
    # The README's module under a name no other test uses; entry_points.txt has no quotes.
    module = "plugin_dukascopy"
    _install_layout_plugin(
        plugins,
        module,
        example["python"],
        entry.replace("dukascopy_ticks", module).replace('"', ""),
    )
    (tmp_path / "EURUSD_Ticks.csv").write_text(example["text"], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["db", "upgrade", "--db", database_url]) == 0
    capsys.readouterr()
    console = example["console"].splitlines()
    command = console[0].removeprefix("$ ").split()
    assert command[:3] == ["mds", "ingest", "ticks"]
    assert main([*command[1:-2], "--db", database_url]) == 1  # one row rejected
    captured = capsys.readouterr()
    rejected = [line for line in console[1:] if line.startswith("rejected:")]
    assert captured.err.splitlines() == rejected
    assert captured.out.splitlines() == [line for line in console[1:] if line not in rejected]
    assert count(database_url) == 3
    with pytest.raises(SystemExit):
        main(["ingest", "ticks", "--help"])
    assert "--layout {plain,lean,dukascopy}" in capsys.readouterr().out


def test_a_layout_plugin_that_cannot_load_exits_2_naming_it(
    tmp_path: Path, plugins: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_layout_plugin(
        plugins, "plugin_broken", "import no_such_module\n", "broken = plugin_broken:LAYOUT"
    )
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "ticks", str(SUNDAY), "--symbol", "EUR/USD", "--db", url]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "mds ingest ticks: layout plugin 'broken' (plugin_broken:LAYOUT): cannot load: "
        "ModuleNotFoundError: No module named 'no_such_module'"
    ]


def test_a_layout_plugin_that_is_no_layout_exits_2_naming_it(
    tmp_path: Path, plugins: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _install_layout_plugin(plugins, "plugin_wrong", "LAYOUT = 42\n", "wrong = plugin_wrong:LAYOUT")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "ticks", str(SUNDAY), "--symbol", "EUR/USD", "--db", url]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "mds ingest ticks: layout plugin 'wrong' (plugin_wrong:LAYOUT): is a int, not a "
        "market_data_services Layout"
    ]
