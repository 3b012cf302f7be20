"""A throwaway `dagster dev` (webserver + daemon) on loopback, and a small GraphQL client for it.

The UI test and the sweep-throughput benchmark use it to drive sweeps through the same stack a
user gets from `bilancio-pipeline ui`: our instance config (`defs.instance.instance_config`) in
a temporary DAGSTER_HOME, the queued run coordinator, the daemon's sensors and run launcher.
The server runs in its own process group, so stopping it also stops its code server and any
run worker still going.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from bilancio_pipeline.benchmarks.pg_server import free_port
from bilancio_pipeline.defs.handoff import WEBSERVER_URL_ENV
from bilancio_pipeline.defs.instance import DAGSTER_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCATION = "bilancio_pipeline.definitions"  # the code location workspace.yaml loads
REPOSITORY = "__repository__"  # the name Dagster gives a module's `Definitions`
TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

_LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
_LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message }
  ... on Error { message } } }"""
_RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
  ... on Runs { results { runId jobName status startTime endTime tags { key value } } }
  ... on PythonError { message } } }"""
_DAEMONS = """{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"""


def without_cloud_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The environment minus every BILANCIO_* and DAGSTER_* setting: the embedded defaults."""
    return {k: v for k, v in env.items() if not k.startswith(("BILANCIO_", "DAGSTER_"))}


def write_instance_yaml(dagster_home: Path, env: Mapping[str, str]) -> Path:
    """dagster.yaml from our instance config, as it reads the given environment."""
    from bilancio_pipeline.defs.instance import instance_config

    saved = dict(os.environ)
    try:  # instance_config reads a few BILANCIO_* settings from os.environ
        os.environ.clear()
        os.environ.update(env)
        config = instance_config(dagster_home)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class GraphQLError(RuntimeError):
    pass


class DagsterDevServer:
    """`with DagsterDevServer(bilancio_home, dagster_home) as server: server.launch_run(...)`.

    Starts `dagster dev -w workspace.yaml` from the repository root on 127.0.0.1 at a free
    port, with BILANCIO_HOME and DAGSTER_HOME set to the given folders and no other
    BILANCIO_*/DAGSTER_* setting unless passed in `env`. `start` returns once the code
    location has loaded and the daemon reports healthy.
    """

    def __init__(self, bilancio_home: Path, dagster_home: Path, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, startup_timeout: float = 90.0):
        self.bilancio_home = Path(bilancio_home)
        self.dagster_home = Path(dagster_home)
        self.env = {**without_cloud_settings(os.environ), **DAGSTER_ENV, **(env or {}),
                    "BILANCIO_HOME": str(self.bilancio_home), "DAGSTER_HOME": str(self.dagster_home)}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.log_path = Path(log_path) if log_path else self.dagster_home / "dagster-dev.log"
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> DagsterDevServer:
        self.bilancio_home.mkdir(parents=True, exist_ok=True)
        command, cwd = self._command()
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self) -> tuple[list[str], Path]:
        """The command that serves, and its folder: `dagster dev` on our instance config."""
        write_instance_yaml(self.dagster_home, self.env)
        self.port = free_port()
        self.env[WEBSERVER_URL_ENV] = self.url  # as `bilancio-pipeline ui` tells its runs (defs/handoff.py)
        dagster = Path(sys.executable).parent / "dagster"
        return [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)], REPO_ROOT

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL to what is left after `timeout`."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the group id is the server's pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(pgid):
                break
            time.sleep(0.5)
        self.process = None
        self._log.close()

    def __enter__(self) -> DagsterDevServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                entries = self.graphql(_LOCATIONS)["workspaceOrError"]["locationEntries"]
                location = next((e for e in entries if e["name"] == LOCATION), None)
                if location and location["loadStatus"] == "LOADED":
                    loaded = location["locationOrLoadError"]
                    if loaded["__typename"] == "PythonError":
                        raise RuntimeError(f"the code location failed to load: {loaded['message']}")
                    if self.daemons_healthy():
                        return
                    last = "daemon not healthy yet"
                else:
                    last = f"code location {location and location['loadStatus']}"
            except (httpx.HTTPError, GraphQLError, KeyError, TypeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev not ready after {self.startup_timeout:.0f} s ({last}):\n{self.log_tail()}")

    # --- GraphQL --------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"])[:2000])
        return body["data"]

    def daemons_healthy(self) -> bool:
        statuses = self.graphql(_DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(s["healthy"] for s in statuses if s["required"])

    def launch_run(self, job_name: str, run_config: dict, tags: Mapping[str, str] | None = None) -> str:
        """Launch a job as the Launchpad's button does; returns the Dagster run id."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job_name},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(_LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = result.get("errors") or result.get("message")
            raise GraphQLError(f"launchRun of {job_name} returned {result['__typename']}: {detail}")
        return result["run"]["runId"]

    def runs(self, job_name: str | None = None, tags: Mapping[str, str] | None = None) -> list[dict]:
        """Runs on the instance, newest first, with their tags as a dict."""
        run_filter: dict[str, Any] = {}
        if job_name:
            run_filter["pipelineName"] = job_name
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        result = self.graphql(_RUNS, {"filter": run_filter})["runsOrError"]
        if result["__typename"] != "Runs":
            raise GraphQLError(result.get("message", result["__typename"]))
        runs = result["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return runs

    def wait_for(self, condition: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "") -> Any:
        """Poll `condition` until it returns something truthy; fail with the server log if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited while waiting for {what}:\n{self.log_tail()}")
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or condition}")

    # --- the processes ----------------------------------------------------------------------
    def process_tree(self) -> list:
        """psutil.Process of the server and everything it started (code server, run workers)."""
        import psutil

        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class TreeMemorySampler:
    """Samples the summed memory of a process tree every `interval` seconds, in a thread: RSS
    (forked processes' shared pages counted in each: an upper bound) and PSS (each shared page
    split among the processes sharing it: what the tree really holds)."""

    def __init__(self, processes: Callable[[], list], interval: float = 0.2):
        self.processes = processes
        self.interval = interval
        self.peak_bytes = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.peak_kinds: dict[str, int] = {}  # what ran at the peak: process kind -> count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            total, pss, kinds = 0, 0, []
            for proc in self.processes():
                try:
                    memory = proc.memory_full_info()  # smaps_rollup: a fraction of a millisecond
                    total += memory.rss
                    pss += memory.pss
                    kinds.append(_kind(proc.cmdline()))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_pss = max(self.peak_pss, pss)
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_processes = total, len(kinds)
                self.peak_kinds = dict(Counter(kinds))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _kind(cmdline: list[str]) -> str:
    """A short name for a process of the tree, from its command line."""
    text = " ".join(cmdline)
    for marker, name in (("dagster_webserver", "webserver"), ("dagster._daemon", "daemon"),
                         ("code-server start", "code-server proxy"), ("api grpc", "code server"),
                         ("forkserver", "forkserver/pool worker"), ("resource_tracker", "resource tracker"),
                         ("spawn_main", "run worker"), (" dev ", "dagster dev")):
        if marker in text:
            return name
    return cmdline[0].rsplit("/", 1)[-1] if cmdline else "?"


def temporary_homes(prefix: str = "bilancio-dagster-") -> tuple[tempfile.TemporaryDirectory, Path, Path]:
    """A temp dir holding `home/` (BILANCIO_HOME) and `dagster/` (DAGSTER_HOME)."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    root = Path(tmp.name)
    return tmp, root / "home", root / "dagster"
