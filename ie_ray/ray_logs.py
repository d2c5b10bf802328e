"""Where Ray's own messages go during a sweep: the run's `ray.log`, not the console.

The console of `python jobs/sweep.py` is for ie-ray's stage lines, progress bars and result tables. Left alone,
Ray adds lines of its own to every run: INFO records of the `ray` and `ray.data` loggers (instance start, Ray
Data's execution plan and, when stdout is not a terminal, Ray Data's progress as INFO records every few seconds),
a notice that token authentication is on, and an ERROR line from the driver's C++ core worker for every Ray Data
actor ("... has constructor arguments in the object store and max_restarts > 0", ray-project/ray#53727: Ray Data
always hands its map function to actors through the object store, and the extraction actors restart on failure
on purpose), and Ray Data's WARNING that "the Ray cluster currently does not have any available CPUs. The
Dataset job will hang ..." (Ray Data checks once, as the extraction pipeline starts; by then the extraction actors
hold their CPUs for the whole pipeline, by design, and its read and write tasks the rest: on a 2-CPU machine that
is all of them, and the job finishes). None of them is about the run. While a run uses Ray they all go to
`<run dir>/ray.log`, which also names the Ray session directory that holds the full logs of every Ray process and
follows each expected warning with one line saying why it is expected. (The extraction actors' "Loading weights"
bars are not drawn at all: `ray_start.WORKER_ENV`.)

How, with Ray 2.60:
- Python records: the `ray` and `ray.data` loggers keep their levels (INFO and DEBUG), so the file handler added
  here sees every INFO record; only their console handlers are raised to WARNING. Hence not
  `ray.init(logging_level=...)`, which sets the logger's level and would keep INFO records out of the file too.
- The core worker's line is written by C++ straight to file descriptor 2 (an spdlog stderr sink at ERROR level).
  No Ray setting moves it: `RAY_BACKEND_LOG_LEVEL=fatal` silences it, but set before `ray.init` it reaches every
  Ray process and drops their ERROR lines from all of Ray's log files. So while Ray is in use, descriptor 2
  points at `ray.log`, and Python's `sys.stderr` and every logging handler that wrote to descriptor 2 point at
  a copy of the original one: what Python writes (progress bars, warnings, tracebacks, Ray's WARNING records,
  worker output) still reaches the console.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO, TypeGuard

RAY_LOGGERS = ("ray", "ray.data")  # children such as "ray._private.worker" propagate to "ray"
CONSOLE_LEVEL = logging.WARNING
# Warnings a local run prints every time that describe Ray, not the run: file only.
FILE_ONLY_LOGGERS = ("ray._private.authentication",)
# Warnings that an ie-ray run sets off by design, by the start of their message: file only, each followed there
# (once) by the line that says why it is expected.
EXPECTED_WARNINGS = {
    "Warning: The Ray cluster currently does not have any available CPUs":
        "[ie-ray] expected, not a hang: the extraction actors hold extract.num_cpus x extract.concurrency CPUs for "
        "the whole pipeline by design and the pipeline's own read/write tasks hold the rest while Ray Data checks; "
        "ie-ray refuses configs whose actors leave the writer no CPU (extract.check_writer_cpu)",
}
FORMAT = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"  # Ray's own (ray.init sets it anyway)


def expected_warning(record: logging.LogRecord) -> str | None:
    """Why `record` is expected in an ie-ray run, or None when it is not one of EXPECTED_WARNINGS."""
    if record.levelno != logging.WARNING:
        return None
    message = record.getMessage()
    return next((why for start, why in EXPECTED_WARNINGS.items() if message.startswith(start)), None)


class _NotFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(FILE_ONLY_LOGGERS) and expected_warning(record) is None


class _RayLogFile(logging.FileHandler):
    """ray.log: every record it is given, and after the first of each expected warning the reason it is expected."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.explained: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        why = expected_warning(record)
        if why and why not in self.explained and self.stream is not None:
            self.explained.add(why)
            self.stream.write(why + self.terminator)
            self.flush()

    def handleError(self, record: logging.LogRecord) -> None:
        """ray.log on a full disk: drop the record instead of printing a traceback per record over the console;
        the sweep's next write stops the run with the one clear out-of-space error (`store.no_room`)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return
        super().handleError(record)


def _is_console(handler: logging.Handler) -> TypeGuard[logging.StreamHandler]:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def _on_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # StringIO, closed or detached streams
        return False


def _console_handlers() -> list[logging.StreamHandler]:
    """Every console handler of every logger (Ray's own hold the stderr object they were created with)."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    found = {id(h): h for logger in loggers for h in logger.handlers if _is_console(h)}
    return list(found.values())


class RayLogRoute:
    """Ray's messages of one run to `path`; `attach` once Ray is imported, `detach` restores the console."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: logging.FileHandler | None = None
        self.console_levels: list[tuple[logging.StreamHandler, int]] = []
        self.filter = _NotFileOnly()
        self.console_fd: int | None = None
        self.stderr_before: TextIO | None = None
        self.streams_before: list[tuple[logging.StreamHandler, object]] = []
        self.sessions: set[str] = set()

    def attach(self) -> None:
        if self.file is not None:
            return
        import ray  # adds the `ray` logger's console handler
        import ray.data  # noqa: F401  (replaces the `ray.data` logger's handlers at import: import it first)

        self.file = _RayLogFile(self.path)
        self.file.setLevel(logging.INFO)
        self.file.setFormatter(logging.Formatter(FORMAT))
        for name in RAY_LOGGERS:
            logger = logging.getLogger(name)
            for handler in logger.handlers:
                # one handler may sit on several of Ray's loggers (after ray.data's import it does): record its
                # level once, or detach would "restore" the raised level recorded the second time
                if _is_console(handler) and all(handler is not h for h, _ in self.console_levels):
                    self.console_levels.append((handler, handler.level))
                    handler.setLevel(max(handler.level, CONSOLE_LEVEL))
                    handler.addFilter(self.filter)
            logger.addHandler(self.file)
        sys.stdout.flush()
        sys.stderr.flush()
        self.console_fd = os.dup(2)
        assert self.file.stream is not None  # a FileHandler opens its file when made (delay=False)
        os.dup2(self.file.stream.fileno(), 2)
        self.stderr_before = sys.stderr
        # Left open on detach: a progress bar may still hold it. The descriptor closes with the object.
        console = os.fdopen(os.dup(self.console_fd), "w", buffering=1, encoding=self.stderr_before.encoding,
                            errors="backslashreplace")
        sys.stderr = console
        # Handlers created before now hold the old stderr object, i.e. descriptor 2, i.e. the file now: point
        # them at the console (Ray's own console handler is one of them).
        self.streams_before = [(h, h.setStream(console)) for h in _console_handlers() if _on_descriptor_2(h.stream)]

    def note_session(self, session_dir: str | None) -> None:
        if self.file is None or not session_dir or session_dir in self.sessions:
            return
        self.sessions.add(session_dir)
        assert self.file.stream is not None  # open from attach to detach
        self.file.stream.write(f"[ie-ray] Ray session directory: {session_dir} (full logs of every Ray process "
                               f"under {Path(session_dir) / 'logs'})\n")
        self.file.flush()

    def detach(self) -> None:
        if self.file is None:
            return
        assert self.stderr_before is not None and self.console_fd is not None  # set by attach, with self.file
        sys.stderr.flush()
        sys.stderr = self.stderr_before
        for handler, stream in self.streams_before:
            handler.setStream(stream)
        os.dup2(self.console_fd, 2)
        os.close(self.console_fd)
        for handler, level in self.console_levels:
            handler.setLevel(level)
            handler.removeFilter(self.filter)
        for name in RAY_LOGGERS:
            logging.getLogger(name).removeHandler(self.file)
        self.file.close()
        self.file, self.console_fd, self.console_levels, self.streams_before = None, None, [], []


_active: RayLogRoute | None = None


@contextmanager
def ray_messages_to(path: Path):
    """For one run: once Ray is in use (`route_ray_messages`), its messages go to `path` until the run ends.

    Nothing happens before Ray is needed: a run whose shards are all cached never imports Ray.
    """
    global _active
    previous, _active = _active, RayLogRoute(path)
    try:
        yield _active
    finally:
        _active.detach()
        _active = previous


def route_ray_messages(session_dir: str | None = None) -> None:
    """Called where Ray starts (`init_ray`): route the run's Ray messages, and name the session in the file."""
    if _active is not None:
        _active.attach()
        _active.note_session(session_dir)
