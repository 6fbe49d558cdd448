"""``Application``: one ``mds run`` — database, services, HTTP server, and their shutdown."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Info

from market_data_services._version import __version__
from market_data_services.app.api import API_POOL_SIZE, DEFAULT_TIMEOUT_SECONDS, make_api
from market_data_services.app.auth import BasicAuth
from market_data_services.app.catalog import ServiceContext, ServiceEntry
from market_data_services.app.catalog import catalog as default_catalog
from market_data_services.app.config import Config, ConfigSource, mask_url
from market_data_services.app.health import HealthRule, health_report
from market_data_services.app.landing import LandingPage
from market_data_services.app.probe import SingleFlightProbe
from market_data_services.app.schema_watch import SchemaWatch, schema_condition
from market_data_services.app.server import HttpLimits, HttpServer, TlsFiles, make_app
from market_data_services.app.webconfig import ServerTls, load_web_config
from market_data_services.runtime import ThreadedBackgroundService
from market_data_services.runtime.ownership import SymbolOwnership as Ownership
from market_data_services.storage.engine import Timeouts, create_engine, is_sqlite
from market_data_services.storage.locks import SqliteRunLock, SqliteRunLockError
from market_data_services.storage.migrate import schema_status, upgrade
from market_data_services.storage.ownership import SymbolOwnership

logger = logging.getLogger(__name__)

#: /readyz waits this long for the database before answering 503 (within 2 s in all).
READY_DEADLINE_SECONDS = 1.5


class StartupError(RuntimeError):
    """``mds run`` could not start (database, migration, address in use)."""


def _symbol_provider(source: ConfigSource, name: str) -> Any:
    def provider() -> tuple[str, ...]:
        return source.load().symbols_for(name)

    return provider


class Application:
    """Builds and runs the enabled services and the HTTP server.

    The constructor does no I/O. ``start()`` opens the database, upgrades an embedded
    one, refuses a schema that is not at head, builds the services, runs the warm-up
    iterations (the demo feed's backfill), starts the loops and the HTTP server.
    ``shutdown()`` stops them all.
    """

    def __init__(
        self,
        config: Config,
        source: ConfigSource,
        *,
        registry: CollectorRegistry | None = None,
        catalog: Mapping[str, ServiceEntry] | None = None,
    ) -> None:
        self.config = config
        self._source = source
        self.registry = REGISTRY if registry is None else registry
        self._catalog = default_catalog() if catalog is None else catalog
        self._rule = HealthRule(
            error_rate_threshold=config.health.error_rate_threshold,
            error_rate_window_seconds=config.health.error_rate_window_seconds,
            error_rate_min_iterations=config.health.error_rate_min_iterations,
        )
        self.engine: Any = None
        #: The HTTP API's own small pool, so readers never take the services' connections.
        self._api_engine: Any = None
        self._timeouts: Timeouts | None = None
        self._run_lock: SqliteRunLock | None = None  # held from start() to shutdown()
        self._schema: SchemaWatch | None = None  # set by start() before the server answers
        # Replaced whole (never mutated) by start(); HTTP threads read the reference.
        self.services: dict[str, ThreadedBackgroundService] = {}
        self.http: HttpServer | None = None
        self._started = threading.Event()
        self._stopping = threading.Event()
        self._database_probe = SingleFlightProbe(
            self._select_one, name="database", deadline_seconds=READY_DEADLINE_SECONDS
        )

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        Info("mds_build", "Version of market-data-services.", registry=self.registry).info(
            {"version": __version__}
        )
        self.engine = self._create_engine()
        self._claim_sqlite_file()
        self.http = self._create_http()
        try:
            self.http.start()
        except OSError as exc:
            raise StartupError(
                f"http.listen: cannot listen on {config.http.listen}: {exc}"
            ) from exc
        self._migrate()
        self.services = self._build_services()
        idle = [name for name in self.services if not config.symbols_for(name)]
        if idle:
            logger.warning(
                "mds.no_symbols",
                extra={
                    "services": idle,
                    "hint": "set symbols in the config file, MDS_SYMBOLS or --symbols",
                },
            )
        for name, service in self.services.items():
            if self._catalog[name].warm_up and not self._stopping.is_set():
                outcome = service.run_once()
                logger.info("service.warmed_up", extra={"service": name, "outcome": outcome.value})
        for service in self.services.values():
            if not self._stopping.is_set():
                service.start()
        self._started.set()
        logger.info(
            "mds.running",
            extra={"url": self.http.url, "services": list(self.services), "version": __version__},
        )

    def _create_engine(self, **pool: Any) -> Any:
        """The one engine of every service and probe, each of its calls bounded (and,
        with ``pool`` settings, the API's)."""
        db = self.config.database
        timeouts = Timeouts(
            lock_seconds=db.busy_timeout_seconds,
            statement_seconds=db.statement_timeout_seconds or None,
            connect_seconds=db.connect_timeout_seconds,
            keepalives_idle_seconds=db.keepalives_idle_seconds,
            keepalives_interval_seconds=db.keepalives_interval_seconds,
            keepalives_count=db.keepalives_count,
        )
        self._timeouts = timeouts
        try:
            return create_engine(db.url, timeouts=timeouts, **pool)
        except Exception as exc:
            raise StartupError(f"database.url: {exc}") from exc

    def _claim_sqlite_file(self) -> None:
        """One ``mds run`` per SQLite file: refuse to start beside another (see
        ``SqliteRunLock`` for why refusing, not waiting)."""
        if not is_sqlite(self.engine):
            return
        try:
            self._run_lock = SqliteRunLock.acquire(self.engine.url.database)
        except SqliteRunLockError as exc:
            raise StartupError(str(exc)) from exc

    def _ownership_factory(self) -> Any:
        """On PostgreSQL, instances share the per-symbol services' symbols."""
        if is_sqlite(self.engine):
            return None
        instance = f"mds run {socket.gethostname()}:{os.getpid()}"

        def factory(service_name: str) -> Ownership:
            return SymbolOwnership(
                self.engine,
                service_name,
                timeouts=self._timeouts,
                application_name=f"{instance} {service_name}",
            )

        return factory

    def _migrate(self) -> None:
        mode = self.config.database.migrate
        if mode == "always" or (mode == "auto" and is_sqlite(self.engine)):
            try:
                upgrade(self.engine)
            except Exception as exc:
                raise StartupError(f"cannot upgrade the database schema: {exc}") from exc
            logger.info("database.upgraded", extra={"url": self._masked_url()})
        self._require_current_schema(mode)

    def _require_current_schema(self, mode: str) -> None:
        """Refuse to start on a schema that is not the newest: every iteration would fail
        on it, and the fix (``mds db upgrade``) is the operator's."""
        try:
            status = schema_status(self.engine)
        except Exception as exc:
            first_line = next(iter(str(exc).splitlines()), type(exc).__name__)
            raise StartupError(f"cannot read the database schema's revision: {first_line}") from exc
        problem = status.problem(self._masked_url())
        if problem is not None:
            if mode == "auto" and status.upgradable:
                problem += ' (or set database.migrate = "always" to upgrade at start)'
            raise StartupError(problem)
        watch = SchemaWatch(
            self.engine,
            url=self._masked_url(),
            interval_seconds=self.config.health.schema_check_interval_seconds,
        )
        watch.seed(status)
        watch.start()
        self._schema = watch

    def _masked_url(self) -> str:
        return mask_url(self.config.database.url)

    def _build_services(self) -> dict[str, ThreadedBackgroundService]:
        services: dict[str, ThreadedBackgroundService] = {}
        for name in self.config.enabled_services():
            entry = self._catalog[name]
            ctx = ServiceContext(
                name=name,
                service_name=entry.service_name,
                engine=self.engine,
                config=self.config.services[name],
                registry=self.registry,
                symbol_provider=_symbol_provider(self._source, name),
                symbol_cache_ttl_seconds=self.config.symbol_cache_ttl_seconds,
                failure_classifier=schema_condition,
                ownership_factory=self._ownership_factory(),
            )
            services[name] = entry.factory(ctx)
        return services

    def _api_timeout_seconds(self) -> float:
        """An API request's statements: the configured statement timeout, at most 10 s."""
        configured = self.config.database.statement_timeout_seconds
        return min(configured, DEFAULT_TIMEOUT_SECONDS) if configured else DEFAULT_TIMEOUT_SECONDS

    def _create_http(self) -> HttpServer:
        http = self.config.http
        auth = None
        if http.basic_auth_username is not None:
            auth = BasicAuth(
                http.basic_auth_username,
                password=http.basic_auth_password,
                password_hash=http.basic_auth_password_hash,
            )
        tls: TlsFiles | ServerTls | None = None
        if http.tls_cert_file is not None and http.tls_key_file is not None:
            tls = TlsFiles(cert_file=http.tls_cert_file, key_file=http.tls_key_file)
        if http.web_config_file is not None:
            web = load_web_config(http.web_config_file)
            tls = web.tls
            auth = BasicAuth.from_hashes(web.users) if web.users else None
        api_timeout = self._api_timeout_seconds()
        self._api_engine = self._create_engine(
            pool_size=API_POOL_SIZE, max_overflow=0, pool_timeout=api_timeout
        )
        api = make_api(self._api_engine, timeout_seconds=api_timeout)
        landing = LandingPage(database_url=self.config.database.url)
        app = make_app(
            registry=self.registry,
            health=self.health,
            ready=self.ready,
            auth=auth,
            api=api,
            landing=landing,
        )
        limits = HttpLimits(
            header_deadline_seconds=http.header_deadline_seconds,
            max_connections=http.max_connections,
            max_request_line_bytes=http.max_request_line_bytes,
            max_header_bytes=http.max_header_bytes,
        )
        return HttpServer(
            app,
            host=http.host,
            port=http.port,
            threads=http.threads,
            tls=tls,
            limits=limits,
            registry=self.registry,
        )

    # -- checks the HTTP server asks -----------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        return health_report(list(self.services.values()), self._rule)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: started, not stopping, database answers, schema current, every service
        loop alive."""
        checks: dict[str, Any] = {}
        database_ok = self._database_ready(checks)
        checks["database"] = database_ok
        schema_ok = self._schema_ready(checks)
        services = self.services
        checks["services"] = {svc.service_name: svc.is_running() for svc in services.values()}
        checks["started"] = self._started.is_set()
        checks["stopping"] = self._stopping.is_set()
        ok = (
            database_ok
            and schema_ok
            and checks["started"]
            and not checks["stopping"]
            and all(checks["services"].values())
        )
        return ok, checks

    def _database_ready(self, checks: dict[str, Any]) -> bool:
        """Whether the database answers ``SELECT 1``, known within the probe's deadline.

        The query runs on the probe's own thread, one at a time (see ``SingleFlightProbe``),
        so a hung database never holds HTTP workers; the engine bounds the query itself.
        """
        if self.engine is None:
            return False
        result = self._database_probe.check()
        if result.error is not None:
            checks["database_error"] = result.error
        return result.ok

    def _select_one(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def _schema_ready(self, checks: dict[str, Any]) -> bool:
        """The schema part of readiness, from the watch's last read (no query here)."""
        if self._schema is None:
            checks["schema"] = False
            return False
        ok, fields = self._schema.report()
        checks.update(fields)
        return ok

    # -- shutdown ---------------------------------------------------------------------------------

    def shutdown(self) -> bool:
        """Stop every service (in parallel, each within its stop timeout), then the server.

        Returns whether every service stopped in time.
        """
        self._stopping.set()
        results: dict[str, bool] = {}  # each key written by one stopper thread
        stoppers = []
        for name, service in self.services.items():
            timeout = self.config.services[name].stop_timeout_seconds

            def stop(
                name: str = name, service: ThreadedBackgroundService = service, t: float = timeout
            ) -> None:
                results[name] = service.stop(t)

            thread = threading.Thread(target=stop, name=f"mds-stop-{name}", daemon=True)
            thread.start()
            stoppers.append((thread, timeout))
        for thread, timeout in stoppers:
            thread.join(timeout + 1.0)
        if self.http is not None:
            self.http.stop()
        if self._schema is not None:
            self._schema.stop(1.0)
        if self.engine is not None:
            self.engine.dispose()
        if self._api_engine is not None:
            self._api_engine.dispose()
        if self._run_lock is not None:
            self._run_lock.release()
        late = [name for name in self.services if not results.get(name, False)]
        if late:
            logger.error("mds.services_did_not_stop", extra={"services": late})
        return not late
