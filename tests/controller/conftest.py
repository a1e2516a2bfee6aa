"""Small sweeps on the digits data for controller tests (a few seconds each)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import textwrap
import time
from pathlib import Path

import pytest

TEMPLATE = """\
name: tiny
backend: {name: cpu, numerics: fp32}
dataset: {name: digits, batch_size: 128}
model:
  layers:
    - {type: affine, nout: !randint [8, 32], init: kaiming, activation: relu}
    - {type: affine, nout: 10, activation: softmax}
  cost: cross_entropy
optimizer: {type: momentum, learning_rate: !loguniform [1.0e-2, 0.3], momentum: 0.9}
training: {epochs: EPOCHS, seed: 0}
metrics: [misclassification]
"""


def write_sweep(tmp: Path, *, strategy="random", trials=3, parallel=2, epochs=2,
                scheduler="fifo", compare="", executor="{type: local}", template=None,
                extra_search="", name="tiny") -> Path:
    (tmp / "model.yaml").write_text((template or TEMPLATE).replace("EPOCHS", str(epochs)))
    sweep = textwrap.dedent(f"""\
        name: {name}
        model: model.yaml
        search:
          strategy: {strategy}
          objective: {{metric: val_misclassification, mode: min}}
          trials: {trials}
          parallel: {parallel}
          seed: 0
          scheduler: {scheduler}
        """)
    sweep += "".join(f"  {line}\n" for line in extra_search.splitlines() if line)
    if compare:
        sweep += f"compare: {compare}\n"
    sweep += f"executor: {executor}\n"
    path = tmp / "sweep.yaml"
    path.write_text(sweep)
    return path


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return tmp_path


def wait_for(pred, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def run_in_pty(argv, cwd=None, env=None, timeout=300, cols=120):
    """(exit code, bytes written) of ``argv`` run with stdin, stdout and stderr on a pseudo
    terminal ``cols`` wide, as from an interactive shell."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    out = b""
    end = time.time() + timeout
    while time.time() < end:
        if not select.select([master], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # every writer closed the terminal
            break
        if not chunk:
            break
        out += chunk
    else:
        proc.kill()
    os.close(master)
    return proc.wait(), out


def screen(data: str) -> list[str]:
    """The lines a terminal shows after ``data``: a carriage return goes back to column 0,
    ESC [ n A moves up, other characters overwrite."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(data):
        escape = re.match(r"\x1b\[(\d*)([A-Za-z])", data[i:])
        if escape:
            if escape.group(2) == "A":
                row = max(0, row - int(escape.group(1) or 1))
            i += escape.end()
            continue
        ch = data[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
        else:
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = ch
            col += 1
    return ["".join(line).rstrip() for line in lines]
