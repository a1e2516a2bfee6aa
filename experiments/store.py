"""The MLflow store: where it is, opening it, creating or upgrading it once, experiments.

An explicit ``MlflowClient(tracking_uri)``, never MLflow's global state. The default store is
``sqlite:///mlflow.db`` in the working directory with artifacts in ``mlartifacts/`` beside it;
an ``http://`` URI points at an ``mlflow server``. ``client_for`` creates or upgrades a SQLite
store under a file lock beside it (``mlflow.db.lock``); read-only callers (``compare``,
``ui``, ``experiments.load``) never write.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neon.errors import UserError

__all__ = [
    "DEFAULT_STORE",
    "EXPERIMENT_KIND",
    "KIND_TAG",
    "TRAINING",
    "artifact_root",
    "client_for",
    "default_uri",
    "experiment_id",
    "mark_training",
    "resolve_uri",
    "safe_key",
    "schema_cache",
    "store_path",
]

DEFAULT_STORE = "mlflow.db"
KIND_TAG = "neon_search.kind"  # "sweep" | "trial" | "single"
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's experiment type tag
TRAINING = "custom_model_development"  # ... for model training (not GenAI)


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="sqlalchemy")
    warnings.filterwarnings("ignore", message=".*noload.*")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_TRACKING_INSECURE_TLS", "false")
    # schema creation and migration announce themselves at INFO ("Creating initial MLflow
    # database tables...", alembic's "Running upgrade ..."); warnings and errors still show
    for name in ("mlflow.store.db.utils", "alembic"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def default_uri() -> str:
    return resolve_uri(f"sqlite:///{DEFAULT_STORE}")


def resolve_uri(uri: str | None) -> str:
    """Absolute SQLite paths, so that the UI and later commands find the same store."""
    if not uri:
        return default_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri[len("sqlite:///"):]).expanduser()
        return f"sqlite:///{path.resolve()}"
    return uri


def store_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store URI; None for servers and other databases."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def artifact_root(uri: str) -> str | None:
    """Artifacts beside a SQLite store (``mlartifacts/``); servers manage their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


STORE_LOCK_SECONDS = 120.0  # longest wait for another process creating or upgrading a store
_RACES = ("already exists", "CircularDependencyError", "database is locked",
          "out-of-date database schema", "no such table", "UNIQUE constraint failed")


def client_for(uri: str | None, create: bool = True) -> Any:
    """An ``MlflowClient`` for ``uri``.

    Writers (``create=True``) create a new SQLite store, or upgrade an older one, under a
    file lock beside it (``mlflow.db.lock``), so that processes opening one new store at once
    never race. Readers (``create=False``: compare, ui, ``experiments.load``) write nothing:
    a missing or outdated store is a ``UserError``.
    """
    _quiet()
    uri = resolve_uri(uri)
    path = store_path(uri)
    if path is None:
        return _retrying(uri)
    revision = _revision(path)
    if not create:
        return _open_existing(uri, path, revision)
    head = _head_revision()
    if revision == head:
        return _retrying(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _store_lock(path):
        revision = _revision(path)
        if revision is None:
            _create_store(path, head)
        elif revision and revision != head:
            _upgrade(uri, path, revision, head)
        return _retrying(uri)  # an empty file gets MLflow's tables here


def _open_existing(uri: str, path: Path, revision: str | None) -> Any:
    if revision is None:
        raise UserError(f"no MLflow store at {path}; run a sweep first or pass --tracking-uri")
    head = _head_revision()
    lock = _lock_path(path)
    if revision != head and lock.exists():  # maybe another process is creating it right now
        with _store_lock(path):
            revision = _revision(path)
    if revision is None or revision == "":
        raise UserError(f"{path} is not an MLflow store (no MLflow tables); run a sweep "
                        "first or pass --tracking-uri")
    if revision != head:
        from mlflow import __version__

        raise UserError(f"the MLflow store {path} has schema {revision}; MLflow {__version__} "
                        f"reads {head}: back it up and run 'mlflow db upgrade {uri}' (a sweep "
                        "logging to it upgrades it too)")
    return _retrying(uri)


def _upgrade(uri: str, path: Path, revision: str, head: str) -> None:
    """``mlflow db upgrade`` of a store that an older MLflow wrote, said in one line."""
    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(uri)
    try:
        _upgrade_db(engine)
    except Exception as exc:
        raise UserError(f"cannot upgrade the MLflow store {path} from schema {revision} to "
                        f"{head}: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    print(f"note: upgraded the MLflow store {path} from schema {revision} to {head}",
          file=sys.stderr)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def _store_lock(path: Path) -> Iterator[None]:
    """Held while a store is created or upgraded; other processes wait for it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(_lock_path(path)), timeout=STORE_LOCK_SECONDS)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"waited {STORE_LOCK_SECONDS:g} s for another process creating or "
                        f"upgrading the MLflow store {path} (it holds {lock.lock_file})"
                        ) from None
    try:
        yield
    finally:
        lock.release()


def _revision(path: Path) -> str | None:
    """The store's schema revision; ``""`` when the file holds no MLflow schema, None when
    there is no file. Read-only: opening never creates or changes the file."""
    import sqlite3

    if not path.is_file():
        return None
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        if "alembic_version" not in tables:
            return ""
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # locked: another process is creating it right now
        return ""
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path} is not an MLflow store ({exc}); pass another --tracking-uri"
                        ) from None
    finally:
        con.close()
    return str(row[0]) if row else ""


def _create_store(path: Path, head: str) -> None:
    """A new store at ``path``, complete when it appears there (a link), so that no other
    process ever opens half a schema: a copy of this MLflow's empty schema, which MLflow's
    own migrations make once per user and schema revision and ``schema_cache()`` keeps.
    Left to ``MlflowClient`` where MLflow lacks the functions used."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    cached = schema_cache() / f"mlflow-schema-{head}.db"
    try:
        if _valid_schema(cached, head):
            shutil.copyfile(cached, tmp)
        elif not _migrate(tmp):
            return
        else:
            _keep(tmp, cached)
        _fsync(tmp)
        try:  # a link never replaces a store that a process without our lock just made
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def schema_cache() -> Path:
    """Where the empty MLflow schema is kept: ``$NEON_SEARCH_CACHE``, else
    ``$XDG_CACHE_HOME/neon-search`` (``~/.cache/neon-search``)."""
    root = os.environ.get("NEON_SEARCH_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "neon-search"


def _valid_schema(path: Path, head: str) -> bool:
    try:
        return _revision(path) == head
    except (UserError, OSError):
        return False


def _migrate(path: Path) -> bool:
    """MLflow's tables in a new file by MLflow's migrations, without an fsync per statement
    (3x faster; the file is not the store until renamed). False where MLflow lacks them."""
    try:
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables
    except ImportError:
        return False
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    sqlalchemy.event.listen(engine, "connect",
                            lambda con, _: con.execute("PRAGMA synchronous=OFF"))
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    return True


def _keep(schema: Path, cached: Path) -> None:
    """Copy a fresh schema into the cache (atomically); a cache that cannot be written is
    no error, the next store is migrated again."""
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(schema, tmp)
        _fsync(tmp)
        os.replace(tmp, cached)
    except OSError:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _head_revision() -> str:
    """The schema revision this MLflow writes and reads."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def _retrying(uri: str, attempts: int = 8) -> Any:
    """``MlflowClient(uri)``, which opens (and for a new store creates) the store at once;
    retried when a process that does not take our lock (``mlflow server``, a notebook)
    creates or migrates the same store at the same moment."""
    from mlflow import MlflowClient

    for attempt in range(1, attempts + 1):
        try:
            return MlflowClient(tracking_uri=uri)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if attempt == attempts or not any(race in text for race in _RACES):
                raise
            time.sleep(0.1 * attempt + random.random() * 0.1)
    raise AssertionError("unreachable")


def experiment_id(client: Any, name: str, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        mark_training(client, exp)
        return exp.experiment_id
    root = artifact_root(uri)
    location = f"{root}/{name}" if root else None
    try:
        return client.create_experiment(name, artifact_location=location,
                                        tags={EXPERIMENT_KIND: TRAINING})
    except Exception:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def mark_training(client: Any, exp: Any) -> None:
    """Tag an experiment without a type as model training, the kind MLflow's UI opens in its
    model-training view (runs, models) rather than the GenAI one (traces, judges, prompts)."""
    if EXPERIMENT_KIND not in (exp.tags or {}):
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, TRAINING)


_UNSAFE = re.compile(r"[^\w\-. :/]")


def safe_key(key: str) -> str:
    """An MLflow-legal param/metric name: ``arch[0].0.nout`` -> ``arch/0.0.nout``."""
    return _UNSAFE.sub("_", key.replace("[", "/").replace("]", ""))
