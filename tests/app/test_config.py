from __future__ import annotations

import io
import re
import tomllib
from pathlib import Path

import pytest

from market_data_services import ThreadedBackgroundService
from market_data_services.app.catalog import SERVICES, ServiceContext, ServiceEntry
from market_data_services.app.cli import main
from market_data_services.app.config import (
    DEFAULT_LISTEN,
    ConfigError,
    ConfigSource,
    DefaultSymbols,
    Override,
    ServiceConfig,
    mask_url,
    parse_listen,
    schema,
)
from market_data_services.demo import DEMO_SYMBOLS
from market_data_services.market.symbols import is_valid_symbol


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file_and_listen_on_loopback() -> None:
    config = ConfigSource(catalog=SERVICES, environ={}).load()
    assert config.http.listen == DEFAULT_LISTEN
    assert config.http.host == "127.0.0.1"
    assert config.database.url == "sqlite:///mds.sqlite"
    assert config.services["demo_feed"].enabled is False


def test_flags_beat_environment_which_beats_the_file_which_beats_defaults(
    tmp_path: Path,
) -> None:
    toml = write(
        tmp_path / "mds.toml",
        """
symbols = ["EUR/USD"]
[http]
listen = "127.0.0.1:1111"
threads = 3
[services.demo_feed]
interval_seconds = 2.5
speed = 10
""",
    )
    env = {"MDS_HTTP_LISTEN": "127.0.0.1:2222", "MDS_SERVICES_DEMO_FEED_SPEED": "20"}
    flags = [Override("http.listen", "127.0.0.1:3333", "--listen")]
    config = ConfigSource(catalog=SERVICES, path=toml, environ=env, overrides=flags).load()
    assert config.http.listen == "127.0.0.1:3333"  # flag
    assert config.services["demo_feed"].options.speed == 20.0  # environment
    assert config.http.threads == 3  # file
    assert config.services["demo_feed"].interval_seconds == 2.5  # file
    assert config.symbols == ("EUR/USD",)  # file
    assert config.services["demo_feed"].stop_timeout_seconds == 5.0  # the entry's default


def test_bad_value_names_the_key_the_problem_and_where_it_came_from(tmp_path: Path) -> None:
    toml = write(tmp_path / "mds.toml", "[services.demo_feed]\ninterval_seconds = -1\n")
    with pytest.raises(ConfigError) as from_file:
        ConfigSource(catalog=SERVICES, path=toml, environ={}).load()
    assert str(from_file.value) == (
        f"services.demo_feed.interval_seconds: must be > 0, got -1 (from {toml})"
    )
    env = {"MDS_SERVICES_DEMO_FEED_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "zero"}
    with pytest.raises(ConfigError) as from_env:
        ConfigSource(catalog=SERVICES, environ=env).load()
    assert "services.demo_feed.circuit_breaker.failure_threshold: must be an integer" in str(
        from_env.value
    )
    assert "MDS_SERVICES_DEMO_FEED_CIRCUIT_BREAKER_FAILURE_THRESHOLD" in str(from_env.value)


def test_http_limits_are_read_and_checked(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "mds.toml",
        "[http]\nheader_deadline_seconds = 2.5\nmax_connections = 64\nmax_header_bytes = 4096\n",
    )
    env = {"MDS_HTTP_MAX_REQUEST_LINE_BYTES": "1024"}
    http = ConfigSource(catalog=SERVICES, path=toml, environ=env).load().http
    assert (http.header_deadline_seconds, http.max_connections) == (2.5, 64)
    assert (http.max_request_line_bytes, http.max_header_bytes) == (1024, 4096)
    bad = {
        "MDS_HTTP_HEADER_DEADLINE_SECONDS": ("0", "must be > 0 and <= 3600, got 0.0"),
        "MDS_HTTP_MAX_CONNECTIONS": ("0", "must be 1..100000, got 0"),
        "MDS_HTTP_MAX_HEADER_BYTES": ("10", "must be 256..1048576, got 10"),
    }
    for variable, (value, message) in bad.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as error:
            ConfigSource(catalog=SERVICES, environ={variable: value}).load()
        assert variable in str(error.value)


def test_wrong_type_in_the_file_is_named(tmp_path: Path) -> None:
    toml = write(tmp_path / "mds.toml", '[http]\nthreads = "many"\n')
    with pytest.raises(ConfigError, match=r"http\.threads: must be an integer, got 'many'"):
        ConfigSource(catalog=SERVICES, path=toml, environ={}).load()


def test_unknown_key_suggests_the_closest_one(tmp_path: Path) -> None:
    toml = write(tmp_path / "mds.toml", "[health]\nerror_rate_treshold = 0.1\n")
    with pytest.raises(ConfigError, match=r"did you mean 'health\.error_rate_threshold'"):
        ConfigSource(catalog=SERVICES, path=toml, environ={}).load()


def test_unknown_service_lists_the_valid_ones(tmp_path: Path) -> None:
    toml = write(tmp_path / "mds.toml", "[services.candels]\nenabled = true\n")
    with pytest.raises(
        ConfigError, match=r"services\.candels: unknown service; valid: .*demo_feed"
    ):
        ConfigSource(catalog=SERVICES, path=toml, environ={}).load()


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.toml", "[http\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        ConfigSource(catalog=SERVICES, path=broken, environ={}).load()
    with pytest.raises(ConfigError, match="config file not found"):
        ConfigSource(catalog=SERVICES, path=tmp_path / "absent.toml", environ={}).load()


def test_every_key_has_its_own_environment_variable() -> None:
    keys = schema(SERVICES)
    names = [key.env for key in keys]
    assert len(names) == len(set(names))
    assert "MDS_DATABASE_URL" in names
    assert "MDS_SYMBOLS" in names
    assert "MDS_SERVICES_DEMO_FEED_SPEED" in names


def test_environment_lists_and_booleans_are_parsed() -> None:
    env = {
        "MDS_SYMBOLS": "EUR/USD, NZD/USD",
        "MDS_SERVICES_DEMO_FEED_ENABLED": "yes",
        "MDS_TELEMETRY_TRACE_CONSOLE": "false",
    }
    config = ConfigSource(catalog=SERVICES, environ=env).load()
    assert config.symbols == ("EUR/USD", "NZD/USD")
    assert config.services["demo_feed"].enabled is True
    assert config.telemetry.trace_console is False


def test_database_timeouts_have_bounded_defaults_environment_variables_and_checks() -> None:
    database = ConfigSource(catalog=SERVICES, environ={}).load().database
    assert (database.statement_timeout_seconds, database.connect_timeout_seconds) == (20.0, 5)
    env = {
        "MDS_DATABASE_STATEMENT_TIMEOUT_SECONDS": "2.5",
        "MDS_DATABASE_CONNECT_TIMEOUT_SECONDS": "3",
        "MDS_DATABASE_KEEPALIVES_IDLE_SECONDS": "30",
        "MDS_DATABASE_KEEPALIVES_INTERVAL_SECONDS": "6",
        "MDS_DATABASE_KEEPALIVES_COUNT": "4",
    }
    database = ConfigSource(catalog=SERVICES, environ=env).load().database
    assert database.statement_timeout_seconds == 2.5
    assert database.connect_timeout_seconds == 3
    assert (
        database.keepalives_idle_seconds,
        database.keepalives_interval_seconds,
        database.keepalives_count,
    ) == (30, 6, 4)
    with pytest.raises(ConfigError) as too_short:
        ConfigSource(catalog=SERVICES, environ={"MDS_DATABASE_CONNECT_TIMEOUT_SECONDS": "1"}).load()
    assert str(too_short.value) == (
        "database.connect_timeout_seconds: must be >= 2 (libpq's minimum), got 1 "
        "(from MDS_DATABASE_CONNECT_TIMEOUT_SECONDS)"
    )
    with pytest.raises(ConfigError, match=r"database\.statement_timeout_seconds: must be >= 0"):
        ConfigSource(
            catalog=SERVICES, environ={"MDS_DATABASE_STATEMENT_TIMEOUT_SECONDS": "-1"}
        ).load()


def test_a_service_can_override_the_symbols() -> None:
    flags = [
        Override("symbols", "EUR/USD,NZD/USD", "--symbols"),
        Override("services.demo_feed.symbols", "NZD/USD", "--set"),
    ]
    config = ConfigSource(catalog=SERVICES, environ={}, overrides=flags).load()
    assert config.symbols_for("demo_feed") == ("NZD/USD",)


def test_demo_without_symbols_works_on_the_sample_pairs() -> None:
    flags = [Override("services.demo_feed.enabled", True, "--demo")]
    config = ConfigSource(catalog=SERVICES, environ={}, overrides=flags).load()
    assert config.symbols == DEMO_SYMBOLS


def test_demo_gives_each_service_the_symbols_it_has_data_for() -> None:
    flags = [
        Override("services.demo_feed.enabled", True, "--demo"),
        Override("services.sentiment.symbols", "EUR/USD", "--set"),
    ]
    config = ConfigSource(catalog=SERVICES, environ={}, overrides=flags).load()
    assert config.symbols_for("candles") == ("EUR/USD", "NZD/USD")
    assert config.symbols_for("dom") == ("XRPUSDT",)
    assert config.symbols_for("sentiment") == ("EUR/USD",)  # configured: kept
    assert config.symbols_for("demo_feed") == DEMO_SYMBOLS


def test_any_enabled_catalog_entry_may_bring_symbols_when_none_are_configured() -> None:
    def never(ctx: ServiceContext) -> ThreadedBackgroundService:
        raise AssertionError("the configuration builds no service")

    catalog = {
        "feed": ServiceEntry(
            service_name="Feed",
            factory=never,
            defaults=ServiceConfig(enabled=False),
            default_symbols=DefaultSymbols(symbols=("BTC+USD",), per_service={"quiet": ()}),
        ),
        "quiet": ServiceEntry(service_name="Quiet", factory=never),
    }
    assert ConfigSource(catalog=catalog, environ={}).load().symbols == ()  # feed disabled
    on = ConfigSource(catalog=catalog, environ={"MDS_SERVICES_FEED_ENABLED": "true"}).load()
    assert on.symbols_for("feed") == ("BTC+USD",)
    assert on.symbols_for("quiet") == ()
    configured = {"MDS_SERVICES_FEED_ENABLED": "true", "MDS_SYMBOLS": "EUR/USD"}
    assert ConfigSource(catalog=catalog, environ=configured).load().symbols == ("EUR/USD",)


def test_book_and_sentiment_keys_are_checked_naming_the_key() -> None:
    bad = [Override("services.sentiment.long_exit", "0.9", "--set")]
    with pytest.raises(ConfigError, match=r"services\.sentiment\.long_enter: thresholds must"):
        ConfigSource(catalog=SERVICES, environ={}, overrides=bad).load()
    env = {"MDS_SERVICES_DOM_BATCH_SIZE": "1"}
    with pytest.raises(ConfigError, match=r"services\.dom\.batch_size: must be 2\.\.1000000"):
        ConfigSource(catalog=SERVICES, environ=env).load()
    config = ConfigSource(
        catalog=SERVICES, environ={"MDS_SERVICES_SENTIMENT_EMA_ALPHA": "0.25"}
    ).load()
    assert config.services["sentiment"].options.ema_alpha == 0.25
    assert config.services["dom"].interval_seconds == 5.0  # the specification's
    assert config.services["sentiment"].interval_seconds == 30.0


def test_repeated_or_malformed_symbols_are_rejected() -> None:
    with pytest.raises(ConfigError, match="repeated symbols"):
        ConfigSource(catalog=SERVICES, environ={"MDS_SYMBOLS": "EUR/USD,EUR/USD"}).load()
    with pytest.raises(ConfigError, match="symbols: symbol must be"):
        ConfigSource(catalog=SERVICES, environ={"MDS_SYMBOLS": "EUR USD"}).load()


def test_a_symbol_the_ingesters_accept_is_accepted_by_the_configuration() -> None:
    config = ConfigSource(catalog=SERVICES, environ={"MDS_SYMBOLS": "BTC+USD,XAU/USD.fx"}).load()
    assert config.symbols == ("BTC+USD", "XAU/USD.fx")
    assert all(is_valid_symbol(symbol) for symbol in config.symbols)


def test_basic_auth_needs_a_user_and_exactly_one_password() -> None:
    with pytest.raises(ConfigError, match=r"http\.basic_auth_username: is required"):
        ConfigSource(catalog=SERVICES, environ={"MDS_HTTP_BASIC_AUTH_PASSWORD": "pw"}).load()
    with pytest.raises(ConfigError, match=r"http\.basic_auth_password_hash: must look like"):
        ConfigSource(
            catalog=SERVICES,
            environ={
                "MDS_HTTP_BASIC_AUTH_USERNAME": "prom",
                "MDS_HTTP_BASIC_AUTH_PASSWORD_HASH": "plain",
            },
        ).load()


def test_listen_accepts_ipv6_and_rejects_garbage() -> None:
    assert parse_listen("[::1]:9999") == ("::1", 9999)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    with pytest.raises(ConfigError, match="must be HOST:PORT"):
        parse_listen("localhost")
    with pytest.raises(ConfigError, match=r"port must be 0\.\.65535"):
        parse_listen("127.0.0.1:70000")


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql+psycopg://mds:s3cret@db:5432/x") == (
        "postgresql+psycopg://mds:***@db:5432/x"
    )
    assert mask_url("sqlite:///mds.sqlite") == "sqlite:///mds.sqlite"


def test_config_show_prints_valid_toml_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = write(
        tmp_path / "mds.toml",
        """
[database]
url = "postgresql+psycopg://mds:hunter2@db.example:5432/market"
[http]
basic_auth_username = "prometheus"
basic_auth_password = "also-secret"
""",
    )
    monkeypatch.delenv("MDS_CONFIG", raising=False)
    assert main(["config", "show", "--config", str(toml), "--demo", "--speed", "5"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "also-secret" not in out
    shown = tomllib.loads(out)
    assert shown["database"]["url"] == "postgresql+psycopg://mds:***@db.example:5432/market"
    assert shown["http"]["basic_auth_password"] == "***"
    assert shown["http"]["basic_auth_username"] == "prometheus"
    assert shown["services"]["demo_feed"]["enabled"] is True
    assert shown["services"]["demo_feed"]["speed"] == 5.0


def test_config_error_exits_2_naming_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDS_HEALTH_ERROR_RATE_THRESHOLD", "2")
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert "health.error_rate_threshold: must satisfy 0 < x <= 1, got 2" in err
    assert "MDS_HEALTH_ERROR_RATE_THRESHOLD" in err


def test_set_flag_needs_key_equals_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--set", "http.threads"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
    assert main(["config", "show", "--set", "http.thread=3"]) == 2
    assert "did you mean 'http.threads'" in capsys.readouterr().err


def test_hash_password_output_is_accepted_by_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["config", "hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("pbkdf2_sha256$")
    env = {"MDS_HTTP_BASIC_AUTH_USERNAME": "u", "MDS_HTTP_BASIC_AUTH_PASSWORD_HASH": hashed}
    assert (
        ConfigSource(catalog=SERVICES, environ=env).load().http.basic_auth_password_hash == hashed
    )


def test_retention_is_off_and_keeps_everything_until_a_table_is_given_an_age() -> None:
    default = ConfigSource(catalog=SERVICES, environ={}).load().services["retention"]
    assert default.enabled is False
    assert default.options.policies() == {}
    env = {
        "MDS_SERVICES_RETENTION_ENABLED": "true",
        "MDS_SERVICES_RETENTION_TICKS_DROP_AFTER_SECONDS": "2592000",
    }
    chosen = ConfigSource(catalog=SERVICES, environ=env).load().services["retention"]
    assert chosen.enabled is True
    assert chosen.options.policies() == {"ticks": 2_592_000.0}


def test_a_too_short_one_minute_candle_retention_names_its_key() -> None:
    env = {"MDS_SERVICES_RETENTION_CANDLES_1M_DROP_AFTER_SECONDS": "3600"}
    with pytest.raises(ConfigError) as error:
        ConfigSource(catalog=SERVICES, environ=env).load()
    message = str(error.value)
    assert message.startswith("services.retention.candles_1m_drop_after_seconds: ")
    assert "must be >= 172800 seconds" in message
    assert "MDS_SERVICES_RETENTION_CANDLES_1M_DROP_AFTER_SECONDS" in message
