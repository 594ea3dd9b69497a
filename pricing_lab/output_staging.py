"""Output folders written whole or not at all: files are written into a staging folder inside
the output folder and moved into place only once everything is written.

The commands (`simulate`, `compare`, `demo` into `--out`) and the Python API
(`SimulationResult.write`, `report.build.write_comparison`) write through `staged_outputs`. A
write that fails part-way (a full disk, an unwritable file, a bad row found late, Ctrl-C) leaves
the folder as it was: the earlier files stay, all of them, and no new file is there, since a mix
of two runs' files (this run's ledger beside the last run's summary) would be read as one result.
The staging folder is on the same file system as the output folder, so moving a file in is a
rename: each output file is replaced in one step, and the interrupt signal is held back while the
files move. A run killed outright (SIGKILL, a power cut) leaves its staging folder behind; the
next write into the same folder removes it. A write staged inside another one (a command's
`SimulationResult.write` into its own staging folder) moves its files into that folder, and they
reach the output folder with the command's other files. An error names the place the user asked
for, never a staging path.

A few files read together but not kept in one folder (`usage report`'s report and its rejected
rows, `forecast`'s table and its rejected rows) are written through `staged_files`: each under a
hidden name beside its place, all renamed once every one is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

# `<--out>/.pricing-lab-partial-<pid>`: the pid says whether the run that made it still runs.
STAGING_PREFIX = ".pricing-lab-partial-"


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedOutputs:
    """Where a run writes (`folder`) and where its files end up (`out`)."""

    folder: Path
    out: Path

    def final(self, path: Path) -> Path:
        """Where `path` (a file written under `folder`) is once the run has finished."""
        return self.out / Path(path).relative_to(self.folder)


@contextlib.contextmanager
def staged_outputs(out: Path) -> Iterator[StagedOutputs]:
    """A staging folder for a run writing into `out`; its files replace those of `out` when the
    block ends without an error. On any error (KeyboardInterrupt included) the staging folder is
    removed, `out` keeps what it held, and a folder `out` this run created is removed again."""
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _remove_dead_runs_leftovers(out)
    folder = out / f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # this pid's own leftover from an earlier life
    try:
        folder.mkdir()
    except OSError as exc:  # not writable: name the folder the user gave
        raise OSError(exc.errno, exc.strerror, str(out)) from None
    staged = StagedOutputs(folder=folder, out=out)
    try:
        yield staged
        with _interrupts_held():
            _move_into_place(folder, out)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: nothing else was put there meanwhile
        where = _named_outside(exc.filename, folder, out) if isinstance(exc, OSError) else None
        if where is not None:
            assert isinstance(exc, OSError)
            raise OSError(exc.errno, exc.strerror or str(exc), str(where)) from exc
        raise
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class StagedFiles:
    """Files of one result (`staged_files`), each written under a hidden name beside its place."""

    twins: Mapping[Path, Path]  # place → hidden file written there first

    def twin(self, path: Path) -> Path:
        """Where to write the file that belongs at `path`."""
        return self.twins[Path(path)]


@contextlib.contextmanager
def staged_files(paths: Iterable[Path]) -> Iterator[StagedFiles]:
    """Files read together as one result (a usage report and its rejected rows), written
    together: the block writes each into `StagedFiles.twin(path)`, a hidden file in the same
    folder, and they are renamed into place when the block ends without an error. On any error
    the hidden files are removed and each path keeps what it held (an OSError naming a hidden
    file names its path). Missing folders are made first."""
    twins = {
        Path(path): Path(path).with_name(f".{Path(path).name}.{STAGING_PREFIX[1:]}{os.getpid()}")
        for path in paths
    }
    for path in twins:
        path.parent.mkdir(parents=True, exist_ok=True)
    staged = StagedFiles(twins=twins)
    try:
        yield staged
        with _interrupts_held():
            for path, twin in twins.items():
                os.replace(twin, path)
    except BaseException as exc:
        for twin in twins.values():
            with contextlib.suppress(OSError):
                twin.unlink()
        if isinstance(exc, OSError) and exc.filename is not None:
            place = {str(twin): path for path, twin in twins.items()}.get(str(exc.filename))
            if place is not None:
                raise OSError(exc.errno, exc.strerror or str(exc), str(place)) from exc
        raise


def _named_outside(filename: object, folder: Path, out: Path) -> Path | None:
    """What an error naming `filename` should name instead: `out` for an error naming no file
    (Arrow's "No space left on device") or the staging folder itself (a write staged inside this
    one), the file's place in `out` for a file being staged; None to leave the error as it is."""
    if filename is None:
        return out
    try:
        relative = Path(str(filename)).relative_to(folder)
    except ValueError:
        return None
    return out / relative


def _move_into_place(folder: Path, out: Path) -> None:
    """Each entry of `folder` replaces the one of the same name in `out` (a folder is moved
    aside first, into `folder`, since a rename cannot replace a folder that holds files)."""
    aside = folder / ".replaced"
    for entry in sorted(folder.iterdir()):
        if entry == aside:
            continue
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            aside.mkdir(exist_ok=True)
            target.rename(aside / entry.name)
        os.replace(entry, target)


def _remove_dead_runs_leftovers(out: Path) -> None:
    """Remove the staging folders of runs that are no longer running (killed outright)."""
    for entry in out.glob(f"{STAGING_PREFIX}*"):
        pid_text = entry.name.removeprefix(STAGING_PREFIX)
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if not _running(int(pid_text)):
            shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:  # EPERM: it runs, as another user
        return exc.errno == errno.EPERM
    return True


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT is delivered after the block, not inside it (main thread only, where Python
    handles signals): the files move all or, short of a kill, none."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
