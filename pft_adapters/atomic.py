"""Write folders and files so that an interrupted write leaves nothing half-done.

Everything is written to a temporary sibling and renamed into place at the end;
a rename is atomic on one filesystem.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import PFTError


def _check_parents(path: Path, option: str) -> None:
    """Refuse a target below a file or in a folder not ours to write: mkdir would fail only after all the work."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise PFTError(f"{option} {path} cannot be written: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PFTError(f"{option} {path} cannot be written: you may not write in {parent}")
            return


def refuse_inputs(path: Path, option: str, reads: Iterable[str | Path]) -> None:
    """Refuse a target that is one of the command's inputs (`reads`: files or folders; names of nothing here, such as
    Hub ids, are skipped), holds one, or lies inside one: writing it would replace or change what is being read.
    Paths are compared resolved, so a symbolic link is no way round."""
    target = Path(path).resolve()
    for source in reads:
        try:
            if not Path(source).exists():
                continue
            resolved = Path(source).resolve()
        except (OSError, ValueError):  # a name no file system takes (too long, a NUL byte): no file of ours
            continue
        if resolved.is_relative_to(target):
            raise PFTError(f"{option} {path} {'is' if resolved == target else 'holds'} {source}, which this command "
                           f"reads: choose another {option}")
        if resolved.is_dir() and target.is_relative_to(resolved):
            raise PFTError(f"{option} {path} lies inside {source}, which this command reads: choose another {option}")


def check_target(path: Path, overwrite: bool, option: str = "--out", reads: Iterable[str | Path] = ()) -> None:
    """Refuse, before any work is done, a folder target that is a file or (without `overwrite`) not empty.

    The current folder (or one above it) is refused too: it is replaced by a rename at the end,
    which would leave the shell in a deleted folder. So is a target that is, holds or lies inside
    one of the command's inputs (`reads`), which `--overwrite` would delete or change.
    """
    _check_parents(path, option)
    if Path.cwd().resolve().is_relative_to(Path(path).resolve()):
        raise PFTError(f"{option} {path} is the current folder or holds it: give a new folder path (like ./zoo)")
    refuse_inputs(path, option, reads)
    if path.exists() and not path.is_dir():
        raise PFTError(f"{option} {path} is a file: give a folder path")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise PFTError(f"{path} already exists and is not empty: choose another {option} or pass --overwrite")
    if path.parent.is_dir():  # the temporary sibling it is written to, made and removed: a name too long, a
        try:                  # read-only file system (which os.access does not see for root) fail now, not at the end
            os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        except OSError as err:
            raise _cannot_write(path, err) from None


@contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes `path` when the block ends without error."""
    path = Path(path)
    check_target(path, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as err:
        raise _cannot_write(path, err) from None
    try:
        yield tmp
        _plain_modes(tmp)
        replace_folder(tmp, path)
    except OSError as err:  # a full disk, a quota, a read-only mount: nothing is left half-written
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(path, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    """The process's umask, for the modes a plain mkdir or open would give: from /proc on Linux, else by setting it
    and back (which, for that instant, changes the modes other threads would create files with)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _plain_modes(root: Path) -> None:
    """Give a finished tree the modes a plain mkdir and open would, so that others may read it as the umask
    allows: mkdtemp makes the folder 0700, and safetensors (0.8) writes its files 0600."""
    mask = _umask()
    for item in [root, *root.rglob("*")]:
        if not item.is_symlink():  # chmod would follow a link out of the tree
            item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def _cannot_write(path: Path, err: OSError) -> PFTError:
    return PFTError(f"cannot write {path}: {err.strerror or err} (in {path.parent}): choose another path")


def _write_failed(path: Path, err: OSError) -> PFTError:
    return PFTError(f"writing {path} failed, nothing was written: {err.strerror or err}"
                    + (f" ({err.filename})" if err.filename else ""))


def replace_folder(src: Path, dst: Path) -> None:
    """Move a finished folder into place. An existing `dst` is first moved into a fresh hidden sibling (a
    leftover of a killed run cannot block it), put back if the swap fails, and removed once it succeeded."""
    if not dst.exists():
        os.replace(src, dst)
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    old = holder / dst.name
    try:
        os.replace(dst, old)
        os.replace(src, dst)
    except BaseException:
        if old.exists():
            os.replace(old, dst)  # a failed swap leaves the old folder where it was
        holder.rmdir()
        raise
    shutil.rmtree(holder, ignore_errors=True)


def check_file_target(path: Path, reads: Iterable[str | Path] = ()) -> None:
    """Refuse, before any work is done, a folder where a file is to be written (an --out file), and a file that is or
    lies inside one of the command's inputs (`reads`)."""
    _check_parents(path, "--out")
    if path.is_dir():
        raise PFTError(f"--out {path} is a folder: give a file path")
    refuse_inputs(path, "--out", reads)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary sibling: a failure (a full disk) leaves the old file, or none."""
    path = Path(path)
    check_file_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes 0600; give what a plain open would: the replaced file's mode, else the umask's
        mode = path.stat().st_mode & 0o777 if path.is_file() else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as err:
        raise _cannot_write(path, err) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(text)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _write_failed(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
