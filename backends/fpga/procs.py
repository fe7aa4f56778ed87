"""The host's side of devices as processes (fpga options ``device_procs``, ``device_addrs``).

``DeviceProcs`` stands where the in-process ``Runtime`` would: ``run(inputs)`` returns
the outputs. At load it spawns one ``backends.fpga.device`` process a device (or
connects to the running ones at ``device_addrs``), sends each its slice
(``devplan``) and wires them to each other; a request is its inputs and a ``RUN`` to
every device, then every device's ``DONE`` (outputs on the way).

When a device dies, hangs or loses a peer, the request in progress fails with
``DeviceUnavailable`` naming the device, and a thread restores the pool: a device that
does not answer a ping is replaced (a spawned one respawned, a remote one reconnected
once whatever runs it has restarted it) and sent its slice again, then every device is
wired afresh under a new epoch. Until then requests fail at once with the same error;
no request ever spans two wirings, and frames of another request are dropped, so an
answer is one request's through one set of devices, or an error.
"""
from __future__ import annotations

import itertools
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from backends.base import BackendUnavailable, DeviceUnavailable
from backends.fpga import devplan, isa, wire
from backends.fpga.wire import Kind

ROOT = Path(__file__).resolve().parents[2]
START_S = 60.0  # a device process to start and say where it listens; a remote one to come back
PING_S = 2.0


class _Failed(Exception):
    def __init__(self, device: int, why: str) -> None:
        super().__init__(why)
        self.device, self.why = device, why


class DeviceProcs:
    """One loaded program over device processes (module doc)."""

    def __init__(self, program: isa.Program, cfg, addrs: tuple[str, ...] | None, timeout_s: float) -> None:
        self.plans = devplan.plans(program)
        k = len(self.plans)  # as many as device_addrs lists (backends.fpga.options)
        self.slices = [devplan.to_wire(cfg, devplan.device_program(program, p), p) for p in self.plans]
        self.remote = addrs is not None
        # A request's devices all finish within this, or it fails: a hung device must not
        # hold the server (the hang watchdog's cancel, if configured, may come sooner).
        self.timeout_s = timeout_s
        self.addrs: list[str] = list(addrs or [""] * k)
        self.procs: list[subprocess.Popen | None] = [None] * k
        self.socks: list[socket.socket | None] = [None] * k
        self.sel = selectors.DefaultSelector()
        self._rids = itertools.count(1)
        self._epoch = 0
        self._down: str | None = None  # why requests fail now (a device is being restored)
        self._restorer: threading.Thread | None = None
        self._closed = False
        try:
            if not self.remote:
                for d in range(k):
                    self.procs[d] = _spawn()
            for d in range(k):
                self._attach(d, START_S if not self.remote else PING_S)
            self._wire()
        except _Failed as exc:
            self.close()
            raise BackendUnavailable(f"fpga device {exc.device} ({self.addrs[exc.device] or 'not started'}) "
                                     f"{exc.why}") from None

    # -- serving -------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request through the devices; ``DeviceUnavailable`` if one fails (module doc)."""
        if self._down:
            self._restore_soon()
            raise DeviceUnavailable(self._down)
        rid = next(self._rids)
        try:
            for d, sock in enumerate(self.socks):
                try:
                    for name in self.plans[d].inputs:
                        wire.send(sock, Kind.INPUT, rid, name, inputs[name])
                    wire.send(sock, Kind.RUN, rid)
                except OSError as exc:
                    raise _Failed(d, f"cannot be reached ({exc})") from exc
            return self._collect(rid)
        except _Failed as exc:
            dead = self._gone()
            why = f"fpga device {exc.device} ({self.addrs[exc.device]}) {exc.why}"
            if dead and dead != [exc.device]:
                why = (f"fpga device {', '.join(map(str, dead))} ({', '.join(self.addrs[d] for d in dead)}) has gone "
                       f"(its connection closed): {why}")
            self._down = (f"{why}; this request failed, and requests fail while the devices that stopped "
                          f"answering are restarted and sent their slices again (seconds)")
            if not self._closed:
                self._restore_soon()
            raise DeviceUnavailable(self._down) from None

    def _collect(self, rid: int) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = {}
        pending = set(range(len(self.socks)))
        deadline = time.monotonic() + self.timeout_s
        while pending:
            events = self.sel.select(max(0.0, deadline - time.monotonic()))
            if not events:
                raise _Failed(min(pending), f"did not finish the request within {self.timeout_s:g} s "
                                           f"(fpga option device_timeout_s)")
            for key, _ in events:
                d = key.data
                try:
                    frame = wire.recv(self.socks[d])
                except (OSError, ValueError) as exc:
                    raise _Failed(d, f"closed its connection ({exc})") from exc
                if frame.rid != rid:  # an abandoned request's, or a ping's: never this one's
                    continue
                if frame.kind is Kind.OUTPUT:
                    outputs[frame.name] = frame.array
                elif frame.kind is Kind.DONE:
                    pending.discard(d)
                elif frame.kind is Kind.ERROR:
                    error = wire.json_of(frame)
                    peer = error.get("peer")
                    if peer is not None:  # the device it lost its link with is the one at fault
                        raise _Failed(peer, f"is cut off: {error['error']}")
                    raise _Failed(d, f"failed the request: {error['error']}")
        return outputs

    def _gone(self) -> list[int]:
        """The devices whose connection has closed (a process that died closes them all at once)."""
        gone = []
        readable, _, _ = select.select(self.socks, [], [], 0)  # a closed one reads as its end
        for sock in readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    gone.append(self.socks.index(sock))
            except OSError:
                gone.append(self.socks.index(sock))
        return sorted(gone)

    def cancel(self) -> None:
        """The hang watchdog's: end the run in progress now (its devices' links cut)."""
        self._closed = True
        for sock in self.socks:
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Disconnect every device and stop the processes spawned here."""
        self._closed = True
        if self._restorer is not None:
            self._restorer.join(START_S)
        for d in range(len(self.socks)):
            self._drop(d)

    # -- loading and restoring -----------------------------------------------------------
    def _attach(self, d: int, timeout: float) -> None:
        """Connect to device ``d`` (read its address from a spawned process), send its slice."""
        if self.procs[d] is not None:
            self.addrs[d] = _listening(self.procs[d], d)
        try:
            sock = wire.connect(self.addrs[d], timeout)
        except OSError as exc:
            raise _Failed(d, f"does not answer ({exc}); is a device process (python -m backends.fpga.device "
                             f"--listen HOST:PORT) running there?") from exc
        self.socks[d] = sock
        self.sel.register(sock, selectors.EVENT_READ, d)
        sock.settimeout(self.timeout_s)
        meta, arrays = self.slices[d]
        try:
            wire.send_json(sock, Kind.HELLO, {"role": "host"})
            wire.send_json(sock, Kind.LOAD, meta)
            for name, array in arrays:
                wire.send(sock, Kind.ARRAY, 0, name, array)
            self._answer(d, 0, "loading its slice")
        except OSError as exc:
            raise _Failed(d, f"closed its connection while loading ({exc})") from exc

    def _wire(self) -> None:
        """Every device's links under a new epoch: frames of the old wiring are dropped."""
        self._epoch += 1
        peers = {str(d): a for d, a in enumerate(self.addrs)}
        for d, sock in enumerate(self.socks):
            try:
                wire.send_json(sock, Kind.WIRE, {"epoch": self._epoch, "peers": peers, "timeout_s": self.timeout_s})
            except OSError as exc:
                raise _Failed(d, f"cannot be reached ({exc})") from exc
        for d in range(len(self.socks)):
            self._answer(d, 0, "connecting to its peers")

    def _answer(self, d: int, rid: int, doing: str) -> None:
        """Wait for device ``d``'s READY for ``rid`` (frames of other requests dropped)."""
        while True:
            try:
                frame = wire.recv(self.socks[d])
            except (OSError, ValueError) as exc:
                raise _Failed(d, f"closed its connection while {doing} ({exc or 'timed out'})") from exc
            if frame.kind is Kind.ERROR and frame.rid == rid:
                raise _Failed(d, f"failed while {doing}: {wire.json_of(frame)['error']}")
            if frame.kind is Kind.READY and frame.rid == rid:
                return

    def _restore_soon(self) -> None:
        if self._restorer is None or not self._restorer.is_alive():
            self._restorer = threading.Thread(target=self._restore, name="fpga-device-restore", daemon=True)
            self._restorer.start()

    def _restore(self) -> None:
        try:
            for d in range(len(self.socks)):
                if not self._alive(d):
                    self._drop(d)
                    if not self.remote:
                        self.procs[d] = _spawn()
                    self._reattach(d)
            self._wire()
            self._down = None
        except _Failed as exc:
            self._down = (f"fpga device {exc.device} ({self.addrs[exc.device]}) could not be restored: {exc.why}; "
                          f"the next request tries again")

    def _reattach(self, d: int) -> None:
        # A remote device comes back when whatever runs it (Kubernetes) has restarted it.
        deadline = time.monotonic() + START_S
        while True:
            try:
                return self._attach(d, PING_S)
            except _Failed:
                if not self.remote or time.monotonic() > deadline or self._closed:
                    raise
                self._drop(d)
                time.sleep(0.2)

    def _alive(self, d: int) -> bool:
        proc, sock = self.procs[d], self.socks[d]
        if sock is None or proc is not None and proc.poll() is not None:
            return False
        rid = next(self._rids)
        try:
            sock.settimeout(PING_S)
            wire.send(sock, Kind.PING, rid)
            self._answer(d, rid, "answering a ping")
            sock.settimeout(self.timeout_s)
            return True
        except (_Failed, OSError):
            return False

    def _drop(self, d: int) -> None:
        sock, proc = self.socks[d], self.procs[d]
        if sock is not None:
            self.sel.unregister(sock)
            sock.close()
            self.socks[d] = None
        if proc is not None:
            proc.kill()  # a hung one too; a dead one is reaped
            proc.wait(timeout=30)
            proc.stdout.close()
            self.procs[d] = None


def _spawn() -> subprocess.Popen:
    """A device process on this machine, on a free loopback port, ending with its host."""
    return subprocess.Popen([sys.executable, "-m", "backends.fpga.device", "--listen", "127.0.0.1:0", "--once"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _listening(proc: subprocess.Popen, d: int) -> str:
    """The address a spawned device process prints once it listens."""
    ready, _, _ = select.select([proc.stdout], [], [], START_S)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening "):
        raise _Failed(d, f"did not start (exit status {proc.poll()}, said {line.strip()!r})")
    return line.split()[1]
