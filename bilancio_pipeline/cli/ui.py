"""`bilancio-pipeline ui`: the Dagster UI and daemon, on the same instance the command line uses.

It runs `dagster dev` as a child and looks after it, as a process manager would:
- before each start, runs left STARTED by processes that died (a crash, kill -9, a reboot) are
  reported failed, so they free their slots and Dagster's run retries re-run them;
- SIGTERM or SIGINT stops it cleanly (`dagster dev` alone ignores SIGTERM when it was started in
  the background, where SIGINT is inherited as ignored); what has not stopped after
  STOP_TIMEOUT_S is killed;
- if `dagster dev` dies on its own (it shuts everything down when its daemon or webserver dies),
  it is started again, a few times at most;
- the console shows warnings and sweep events, not a sensor tick every few seconds.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import click

from bilancio_pipeline.lifetime import end_with_parent

DEFAULT_PORT = 3000
STOP_TIMEOUT_S = 30.0
MAX_RESTARTS = 5  # unexpected exits of `dagster dev` in a row before giving up
STABLE_AFTER_S = 120.0  # a `dagster dev` that ran this long resets the count


_held: list = []  # the lock that says this process is the instance's only `ui`, held until exit


def _prepare_instance() -> str:
    """Open the instance once (creating its tables: the webserver and the daemon would race to do
    it on a fresh instance), say what a user-written dagster.yaml lacks, end dead runs."""
    from filelock import FileLock, Timeout

    from bilancio_pipeline.defs.dead_runs import end_dead_runs
    from bilancio_pipeline.defs.instance import get_instance, warnings_for

    instance = get_instance()
    home = os.environ["DAGSTER_HOME"]
    try:
        if not _held:
            lock = FileLock(os.path.join(home, ".bilancio-ui.lock"))
            try:
                lock.acquire(timeout=0)  # released by the OS when this process ends, however it ends
                _held.append(lock)
            except Timeout:
                click.echo("Warning: another `bilancio-pipeline ui` is running on this instance", err=True)
        for problem in warnings_for(instance):
            click.echo(f"Warning: {problem}", err=True)
        # As the instance's only `ui`, no daemon but ours (not started yet) can be launching a
        # run: one left STARTING was being launched by a daemon that died.
        end_dead_runs(instance, no_launcher=bool(_held))
    finally:
        instance.dispose()
    return home


def serve(host: str, port: int) -> None:
    """Run `dagster dev` (webserver + daemon) for our definitions until stopped."""
    from bilancio_pipeline.defs.console import CONSOLE_ENV, events

    os.environ[CONSOLE_ENV] = "1"  # sweep events on this console, from every process below
    events()
    home = _prepare_instance()
    if importlib.util.find_spec("dagster_webserver") is None:
        raise click.ClickException("the Dagster webserver is not installed; run `bash .ci/install`")
    from bilancio_pipeline.defs.handoff import WEBSERVER_URL_ENV
    from bilancio_pipeline.volume_http import start_beside_ui

    if start_beside_ui(port):  # the local volume over http: report and artifact links open in the browser
        click.echo(f"Results volume: {os.environ['BILANCIO_VOLUME_URL']}")
    click.echo(f"Dagster UI: http://{host}:{port}  (instance: {home}; Ctrl-C to stop)")
    # Where the runs below find the webserver, to hand a sweep on without a sensor tick (handoff.py).
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    os.environ[WEBSERVER_URL_ENV] = f"http://{local}:{port}"
    sys.stdout.flush()
    # `dagster dev` warns on every start that `dg dev` supersedes it; `dg` is not installed here.
    command = [sys.executable, "-W", "ignore:Function `dev_command` is superseded", "-m", "dagster", "dev",
               "-m", "bilancio_pipeline.definitions", "-h", host, "-p", str(port), "--log-level", "warning"]
    sys.exit(_supervise(command))


def _supervise(command: list[str]) -> int:
    stopping: list[int] = []
    child: subprocess.Popen | None = None

    def on_signal(signum, frame):
        first = not stopping
        stopping.append(signum)
        if child is None or child.poll() is not None or not first:
            return
        # A Ctrl-C in a terminal reached `dagster dev` too (same process group): one is enough.
        if signum == signal.SIGINT and _in_foreground():
            return
        child.send_signal(signal.SIGINT)

    # Our own handlers also mean `dagster dev` starts with SIGINT at its default, never ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    restarts = 0
    while True:
        started = time.monotonic()
        # SIGTERM to `dagster dev` when this process dies, however it dies, so a `ui` killed alone
        # does not leave it holding the port.
        child = subprocess.Popen(command, preexec_fn=end_with_parent)
        code = _wait(child, stopping)
        if stopping:
            _stop_leftovers()
            return 0
        if time.monotonic() - started > STABLE_AFTER_S:
            restarts = 0
        restarts += 1
        if restarts > MAX_RESTARTS:
            click.echo(f"Error: dagster dev exited {MAX_RESTARTS} times in a row (last code {code}); giving up",
                       err=True)
            return 1
        click.echo(f"Warning: dagster dev exited unexpectedly (code {code}); starting it again", err=True)
        time.sleep(min(2.0 * restarts, 10.0))
        if stopping:
            return 0
        _prepare_instance()


def _wait(child: subprocess.Popen, stopping: list[int]) -> int:
    """Wait for `dagster dev` to exit; once a stop was asked for, give it STOP_TIMEOUT_S, then kill
    what is left of its process tree."""
    import psutil

    tree = []
    while True:
        try:
            return child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if not stopping:
            continue
        try:
            tree = [psutil.Process(child.pid), *psutil.Process(child.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        try:
            return child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            click.echo(f"Warning: dagster dev did not stop within {STOP_TIMEOUT_S:.0f} s; killing it", err=True)
            for process in tree:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            return child.wait()


def _stop_leftovers() -> None:
    """Stop what is left of this process group once `dagster dev` has exited: processes whose
    parent was killed earlier (a run worker's pool) are no longer in its tree but still in our
    group. Only when this process leads its group, as under a shell, setsid or systemd."""
    import psutil

    group = os.getpgrp()
    if group != os.getpid():
        return
    left = []
    for process in psutil.process_iter():
        try:
            if process.pid != group and os.getpgid(process.pid) == group:
                process.terminate()
                left.append(process)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    _, alive = psutil.wait_procs(left, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _in_foreground() -> bool:
    """This process belongs to the foreground process group of its terminal."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True)
def command(host, port):
    """Start the Dagster UI and daemon (launch sweeps from the launch_sweep_job Launchpad)."""
    serve(host, port)
