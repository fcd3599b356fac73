"""The raw copy's two halves: ``python _copy.py FILE`` writes FILE to stdout; ``_copy.py -`` copies
stdin to stdout. Plain blocking reads and writes of 64 KiB, nothing else."""

import os
import sys


def main() -> None:
    fd = 0 if sys.argv[1] == "-" else os.open(sys.argv[1], os.O_RDONLY)
    read, write = os.read, os.write
    while data := read(fd, 65536):
        view = memoryview(data)
        while view:
            view = view[write(1, view):]


if __name__ == "__main__":
    main()
