"""The results pipe: how the checks' runner, in the grader's sandbox, hands each task's outputs to the grader.

`python -m hw3_utils.checks --run --cases CASES.pt --results-fd N [TASK ...]` writes, task by task, on the
pipe N the grader opened:

    S <task>\\n                  the task started (the grader's clock for it starts)
    R <task> <n>\\n<n bytes>     its result: torch.save of {"outputs": [{name: tensor}, ...]}, one dict per
                                case, or {"error": message}, with "kind": "not implemented" for a stub

The writer runs a submission's code, so the reader trusts nothing: a header is one ASCII line of at most
MAX_HEADER bytes naming a task it waits for, a result at most MAX_RESULT bytes, read with weights_only, and
every output a plain dense CPU tensor under the expected names (`decode`). A malformed header ends the reading
(`read_records` drains the rest); a malformed result costs only its own task.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import torch

MAX_HEADER = 100
MAX_RESULT = 64 * 1024 * 1024  # one task's outputs
NOT_IMPLEMENTED = "not implemented"
REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8,
               torch.bool)


# writing: the checks' runner -----------------------------------------------------------------------
def send(fd: int, data: bytes) -> None:
    """Write all of `data` on the file descriptor `fd` (a pipe takes it in pieces)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def started(tid: str) -> bytes:
    """The record saying task `tid` started."""
    return f"S {tid}\n".encode()


def outputs_payload(outputs: list[dict]) -> dict:
    """A task's result: its outputs, one {name: tensor} per case."""
    return {"outputs": outputs}


def error_payload(message: str, not_implemented: bool = False) -> dict:
    """A task's result when its code raised: the message, and whether it is a stub not implemented yet."""
    return {"error": message, "kind": NOT_IMPLEMENTED} if not_implemented else {"error": message}


def result(tid: str, payload: dict) -> bytes:
    """The record of task `tid`'s result; raises what torch.save raises when the payload cannot be saved."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    return f"R {tid} {len(data)}\n".encode() + data


# reading: the grader ---------------------------------------------------------------------------------
def read_records(f, tasks):
    """The records of a binary stream `f`, for the task ids in `tasks` only: ("S", task, None) and
    ("R", task, result bytes). Stops at the first malformed or oversized record, after draining the rest."""
    tasks = set(tasks)
    while line := f.readline(MAX_HEADER):
        parts = line.decode("ascii", "replace").split()
        if len(parts) == 2 and parts[0] == "S" and parts[1] in tasks:
            yield "S", parts[1], None
            continue
        if len(parts) == 3 and parts[0] == "R" and parts[1] in tasks and parts[2].isdigit() \
                and int(parts[2]) <= MAX_RESULT:
            data = f.read(int(parts[2]))
            if len(data) == int(parts[2]):
                yield "R", parts[1], data
                continue
        break  # something else wrote on the pipe: ignore the rest, but drain it
    while f.read(1 << 16):
        pass


class Malformed(ValueError):
    """A result that is not a task's outputs as the grader expects them (the message says how)."""


@dataclass(frozen=True)
class TaskError:
    """A result reporting that the task's code raised: its message (at most 1,000 characters)."""

    message: str
    not_implemented: bool = False


def plain_tensor(v, expected: torch.Tensor) -> str | None:
    """Why `v`, sent by a submission, is not a tensor the grader may compute with (None: it is).

    Before any arithmetic: a plain dense CPU tensor (not a subclass, meta, sparse or quantized one), of a real
    dtype and a sane element count (a stride-0 view of 2**50 elements is refused, not expanded; a wrong
    shape is left to `checks.compare`, which explains it). A view beyond its storage cannot reach here:
    torch.load rebuilds every tensor with `set_`, which refuses one.
    """
    if type(v) is not torch.Tensor:
        return f"is a {type(v).__name__}, not a tensor"
    if v.layout != torch.strided or v.device.type != "cpu" or v.is_quantized or v.is_meta:
        return f"is a {str(v.layout).removeprefix('torch.')} tensor on {v.device.type}, not a dense CPU tensor"
    if v.numel() > 16 * max(expected.numel(), 1024):
        return f"has {v.numel()} elements, far more than the {expected.numel()} expected"
    if v.dtype not in REAL_DTYPES:
        return f"has dtype {v.dtype}"
    return None


def decode(data: bytes, expected: list[dict]) -> list[dict] | TaskError:
    """A task's result bytes, validated before use: its outputs [{name: plain tensor}] (copies, one per case of
    `expected`, under the same names), or the TaskError the runner reported. Raises Malformed otherwise."""
    if len(data) > MAX_RESULT:
        raise Malformed(f"its outputs are larger than {MAX_RESULT} bytes")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise Malformed(f"its outputs could not be read ({type(err).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):  # the runner's report of an exception
        return TaskError(obj["error"][:1000], obj.get("kind") == NOT_IMPLEMENTED)
    outs = obj.get("outputs") if isinstance(obj, dict) else None
    if not isinstance(outs, list) or len(outs) != len(expected) or not all(
            isinstance(o, dict) and set(o) == set(e) for o, e in zip(outs, expected)):
        raise Malformed("malformed outputs")
    for k, (o, e) in enumerate(zip(outs, expected)):
        for name, v in o.items():
            why = plain_tensor(v, e[name])
            if why:
                raise Malformed(f"malformed outputs: case {k + 1}'s {name} {why}")
    return [{name: v.clone() for name, v in o.items()} for o in outs]
