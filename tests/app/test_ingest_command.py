from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
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
    assert main(["db", "upgrade", "--db", database_url]) == 0
    capsys.readouterr()
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


# -- hostile files: a per-file error with file and line, never a traceback -----------------------

GOOD_TICKS = "timestamp,bid,ask\n1699999000000,1.1,1.2\n1699999001000,1.1,1.2\n"


def _good_ticks(tmp_path: Path) -> Path:
    """Another file of the same command, which must load whatever the damaged one does."""
    path = tmp_path / "good.csv"
    path.write_text("timestamp,bid,ask\n1699999100000,1.1,1.2\n1699999101000,1.1,1.2\n")
    return path


def _ingest(url: str, *paths: Path) -> tuple[int, str, str]:
    """Exit status, stdout, stderr of ``mds ingest ticks PATH...`` in a child process (a
    traceback or a hang would show there; the timeout bounds a regression)."""
    command = ["-m", "market_data_services.app.cli", "ingest", "ticks", *map(str, paths)]
    done = subprocess.run(
        [sys.executable, *command, "--symbol", "EUR/USD", "--no-progress", "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def _failures(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("failed: ")]


def test_a_truncated_gzip_keeps_the_rows_before_the_damage_and_the_other_files_load(
    database_url: str, tmp_path: Path
) -> None:
    data = SUNDAY.read_bytes()
    damaged = tmp_path / SUNDAY.name
    damaged.write_bytes(data[: len(data) // 2])
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code, out, err = _ingest(database_url, damaged, _good_ticks(tmp_path))
    assert code == 1
    [failure] = _failures(err)
    prefix = f"failed: {damaged}:"
    assert failure.startswith(prefix)
    line, message = failure.removeprefix(prefix).split(": ", 1)
    assert message == (
        "corrupt or truncated compression (Compressed file ended before the end-of-stream "
        "marker was reached)"
    )
    # Every whole row before the damage is stored (LEAN files have no header), and the
    # other file too.
    assert 1_000 < int(line) < 8_025
    assert count(database_url) == int(line) - 1 + 2
    assert "2 files," in out


def test_a_flipped_byte_in_a_gzip_is_reported_with_file_and_line(
    database_url: str, tmp_path: Path
) -> None:
    data = bytearray(SUNDAY.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / SUNDAY.name
    damaged.write_bytes(bytes(data))
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code, _out, err = _ingest(database_url, damaged, _good_ticks(tmp_path))
    assert code == 1
    [failure] = _failures(err)
    assert failure.startswith(f"failed: {damaged}:")
    assert "corrupt or truncated compression (" in failure
    assert count(database_url) >= 3_897 + 2  # the rows before the flipped byte, the other file


DAMAGED_CSV = {
    "stray_quote": (
        GOOD_TICKS.encode() + b'1699999002000,"1.1,1.2\n1699999003000,1.1,1.2\n',
        "CSV error (a quoted field runs from line 4 over 1 line ends (a stray quote?))",
    ),
    "latin1_byte": (
        GOOD_TICKS.encode() + b"1699999002000,1.1,1.2\xe9\n1699999003000,1.1,1.2\n",
        "not UTF-8 text (invalid continuation byte)",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGED_CSV))
def test_csv_damage_stops_the_file_at_its_line_keeping_the_rows_before(
    database_url: str, tmp_path: Path, damage: str
) -> None:
    content, message = DAMAGED_CSV[damage]
    damaged = tmp_path / "damaged.csv"
    damaged.write_bytes(content)
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code, out, err = _ingest(database_url, damaged, _good_ticks(tmp_path))
    assert code == 1
    assert _failures(err) == [f"failed: {damaged}:4: {message}"]
    assert "4 ticks accepted" in out
    assert count(database_url) == 4  # lines 2-3 of the damaged file, and the other file


def test_numbers_python_would_accept_are_rejected_with_a_reason(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "numbers.csv"
    rows = ["1_000", "0x1p3", "\u0661.\u0661", "1e400", "inf", "NaN"]
    path.write_text(
        GOOD_TICKS + "".join(f"16999990{10 + i}000,{bid},1.2\n" for i, bid in enumerate(rows))
    )
    assert main(["db", "upgrade", "--db", database_url]) == 0
    capsys.readouterr()
    assert main(["ingest", "ticks", str(path), "--symbol", "EUR/USD", "--db", database_url]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[:3] == [
        f"rejected: {path}:4: bid '1_000' is not a decimal number; row '1699999010000,1_000,1.2'",
        f"rejected: {path}:5: bid '0x1p3' is not a decimal number; row '1699999011000,0x1p3,1.2'",
        f"rejected: {path}:6: bid '\u0661.\u0661' is not a decimal number; "
        "row '1699999012000,\u0661.\u0661,1.2'",
    ]
    assert "rejected by reason: malformed 3, not_finite 3" in captured.out
    assert count(database_url) == 2


def test_times_out_of_any_range_are_rejected_rows_naming_the_line(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "times.csv"
    path.write_text(GOOD_TICKS + "9" * 30 + ",1.1,1.2\n28521834-01-01T00:00:00,1.1,1.2\n")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    capsys.readouterr()
    assert main(["ingest", "ticks", str(path), "--symbol", "EUR/USD", "--db", database_url]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"rejected: {path}:4: timestamp {'9' * 30} read as epoch ms")
    assert err[1].startswith(f"rejected: {path}:5: timestamp '28521834-01-01T00:00:00' is ")
    assert count(database_url) == 2


def test_json_nested_too_deep_is_a_rejected_line_and_the_lines_around_it_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = '{"symbol": "EUR/USD", "ts": %d, "bids": [[1.0, 1.0]], "asks": [[1.1, 1.0]]}\n'
    path = tmp_path / "deep.jsonl"
    path.write_text(book % 1699999000000 + "[" * 100_000 + "\n" + book % 1699999001000)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main(["ingest", "dom", str(path), "--db", url]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"rejected: {path}:2: JSON nested too deeply; line '[[[")
    assert "2 snapshots accepted" in captured.out


def test_a_fifo_is_refused_at_once_without_being_opened(database_url: str, tmp_path: Path) -> None:
    fifo = tmp_path / "ticks.csv"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code, out, err = _ingest(database_url, fifo, _good_ticks(tmp_path))
    assert code == 1
    assert _failures(err) == [
        f"failed: {fifo}: a FIFO (named pipe), not a regular file: not opened"
    ]
    assert "2 ticks accepted" in out


def test_a_device_and_a_socket_are_refused_without_being_opened(
    database_url: str, tmp_path: Path
) -> None:
    server = socket.socket(socket.AF_UNIX)
    sock = tmp_path / "ticks.sock"
    server.bind(str(sock))
    try:
        assert main(["db", "upgrade", "--db", database_url]) == 0
        code, out, err = _ingest(database_url, Path("/dev/zero"), sock, _good_ticks(tmp_path))
    finally:
        server.close()
    assert code == 1
    assert _failures(err) == [
        "failed: /dev/zero: a device, not a regular file: not opened",
        f"failed: {sock}: a socket, not a regular file: not opened",
    ]
    assert "2 ticks accepted" in out


def test_a_zip_cut_short_is_reported_and_the_other_files_load(
    database_url: str, tmp_path: Path
) -> None:
    archive = tmp_path / "ticks.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("ticks.csv", GOOD_TICKS * 100)
    archive.write_bytes(archive.read_bytes()[:-30])  # the central directory is cut
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code, out, err = _ingest(database_url, archive, _good_ticks(tmp_path))
    assert code == 1
    assert _failures(err) == [
        f"failed: {archive}: a broken zip archive (File is not a zip file)",
    ]
    assert "2 ticks accepted" in out


def test_an_unreadable_subdirectory_and_file_are_reported_not_skipped() -> None:
    # As root chmod stops nothing, so the command then runs as nobody, in a directory
    # nobody may use (tmp_path is root's alone).
    as_user: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to run as nobody")
        as_user = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    top = Path(tempfile.mkdtemp(prefix="mds-unreadable-"))
    try:
        top.chmod(0o777)
        data = top / "data"
        hidden = data / "hidden"
        hidden.mkdir(parents=True)
        (hidden / "t.csv").write_text(GOOD_TICKS)
        (data / "good.csv").write_text(GOOD_TICKS)
        locked = data / "locked.csv"
        locked.write_text(GOOD_TICKS)
        locked.chmod(0)
        hidden.chmod(0)
        url = f"sqlite:///{top / 'db.sqlite'}"
        command = ["-m", "market_data_services.app.cli", "ingest", "ticks", str(data)]
        done = subprocess.run(
            [*as_user, sys.executable, *command, "--symbol", "EUR/USD", "--db", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        (top / "data" / "hidden").chmod(0o755)
        shutil.rmtree(top)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    assert _failures(done.stderr) == [
        f"failed: {hidden}: directory cannot be listed (Permission denied)",
        f"failed: {locked}: cannot be read (Permission denied)",
    ]
    assert "2 ticks accepted" in done.stdout


def test_when_every_file_fails_nothing_is_written_and_the_exit_is_2(
    database_url: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    notes = tmp_path / "notes.csv"
    notes.write_text("hello\n")
    assert main(["db", "upgrade", "--db", database_url]) == 0
    code, _out, err = _ingest(database_url, fifo, notes)
    assert code == 2
    assert len(_failures(err)) == 2
    assert err.splitlines()[-1] == "mds ingest ticks: no usable tick files"
    assert count(database_url) == 0
