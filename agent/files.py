"""Files the agent keeps on its host: its crash-recovery option file and its lease file."""

import os


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Write, fsync, rename over, fsync the directory: after a crash, old or new, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
