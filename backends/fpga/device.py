"""One simulated device as a process: Brainwave's hardware microservice.

``python -m backends.fpga.device --listen HOST:PORT [--once]`` listens for one host
(the ``FpgaBackend`` in the server) and for the devices that send it registers. The
host loads the device's slice (``devplan``: its matrices, constants and instructions),
tells it its peers (``WIRE``), then sends requests: each request's inputs, then
``RUN``. The device runs its instructions in program order with the runtime's own
bound steps, taking the registers it does not make from its peers' frames and sending
the ones its peers read as soon as they are made; it returns its outputs and ``DONE``.

One thread: the device waits for frames with ``select`` over every connection, so
nothing is handed between threads on a request's path. Every frame carries the
request id and every peer link the epoch of the wiring it was made for: a frame of
an earlier request or wiring is dropped, never used. A lost peer fails the request it
was needed for with an ``ERROR`` naming that peer; a host that goes away takes the
slice with it (``--once``: the process exits, as a spawned device should).
"""
from __future__ import annotations

import argparse
import selectors
import socket
import sys
import time

import numpy as np

from hw.config import MvuConfig

from backends.fpga import devplan, matunit, mvu, wire
from backends.fpga.runtime import Runtime
from backends.fpga.wire import Kind

# Seconds a device waits for a peer's register or a slow write before it fails the
# request (a hung peer must not hold a device, and through it the host, forever), until
# the host's WIRE says its own (fpga option device_timeout_s).
TIMEOUT_S = 10.0


class Abort(Exception):
    """The request in progress cannot finish here (a peer is gone, the host moved on)."""

    def __init__(self, why: str, peer: int | None = None) -> None:
        super().__init__(why)
        self.peer = peer  # the device it is about, if one


class Device:
    """The state of one device process: its connections, its slice, its request."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        self.host: socket.socket | None = None
        self.epoch = -1
        self.timeout_s = TIMEOUT_S
        self.links: dict[int, socket.socket] = {}  # device -> our link to it
        self.inbound: dict[socket.socket, tuple[int, int]] = {}  # a peer's link to us -> (device, epoch)
        self.stash: dict[tuple[int, str], np.ndarray] = {}  # (request, register) -> a peer's value
        self.lost: Abort | None = None  # a peer this wiring needs is gone
        self.held: list[wire.Frame] = []  # host frames that arrived mid-request
        self.runtime: Runtime | None = None

    # -- connections ---------------------------------------------------------------------
    def next_host_frame(self) -> wire.Frame:
        """Serve peers and new connections until the host sends a frame."""
        while not self.held:
            frame = self.pump(None)
            if frame is not None:
                return frame
        return self.held.pop(0)

    def pump(self, timeout: float | None) -> wire.Frame | None:
        """One round of ``select``: accept, stash peers' registers; the host's frame if it sent one."""
        for key, _ in self.sel.select(timeout):
            if key.data == "accept":
                self._accept()
            elif key.data == "peer":
                self._from_peer(key.fileobj)
            else:
                return wire.recv(self.host)  # Closed when the host has gone
        return None

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout_s)
        try:
            hello = wire.json_of(wire.recv(sock))
        except (OSError, ValueError):
            sock.close()
            return
        if hello.get("role") == "host":
            if self.host is not None:  # a new host replaces the old: its slice goes with it
                self.drop_host()
            self.host = sock
            self.sel.register(sock, selectors.EVENT_READ, "host")
        else:
            self.inbound[sock] = (int(hello["device"]), int(hello["epoch"]))
            self.sel.register(sock, selectors.EVENT_READ, "peer")

    def _from_peer(self, sock: socket.socket) -> None:
        device, epoch = self.inbound[sock]
        try:
            frame = wire.recv(sock)
        except (OSError, ValueError) as exc:
            self._close_inbound(sock)
            if epoch == self.epoch:
                self.lost = Abort(f"lost its link from device {device} ({exc or type(exc).__name__})", device)
            return
        if epoch == self.epoch and frame.kind is Kind.TENSOR:
            self.stash[frame.rid, frame.name] = frame.array

    def _close_inbound(self, sock: socket.socket) -> None:
        self.sel.unregister(sock)
        del self.inbound[sock]
        sock.close()

    def drop_host(self) -> None:
        """The host has gone: forget its slice, its wiring and its requests."""
        self.sel.unregister(self.host)
        self.host.close()
        self.host, self.runtime, self.epoch, self.lost = None, None, -1, None
        for sock in list(self.inbound):
            self._close_inbound(sock)
        for sock in self.links.values():
            sock.close()
        self.links.clear()
        self.stash.clear()
        self.held.clear()

    # -- what the host asks --------------------------------------------------------------
    def load(self, meta: dict) -> None:
        arrays = {}
        for _ in range(meta["arrays"]):
            frame = wire.recv(self.host)
            arrays[frame.name] = frame.array
        cfg, program, self.plan = devplan.from_wire(meta, arrays)
        engine = mvu.golden_products if isinstance(cfg, MvuConfig) else matunit.golden_tiles
        self.runtime = Runtime(program, cfg, engine)
        self.schedule = list(zip(self.runtime.steps, self.plan.receive, self.plan.send))
        self.out_keys = [(name, f"__out__{name}") for name in self.plan.outputs]

    def wire_up(self, meta: dict) -> None:
        """Links of a new epoch to every device this one sends to; older ones closed."""
        for sock in self.links.values():
            sock.close()
        self.links.clear()
        self.epoch, self.lost, self.timeout_s = meta["epoch"], None, meta["timeout_s"]
        self.stash.clear()
        for sock, (_, epoch) in list(self.inbound.items()):
            if epoch < self.epoch:
                self._close_inbound(sock)
        for device in self.plan.peers:
            sock = wire.connect(meta["peers"][str(device)], self.timeout_s)
            wire.send_json(sock, Kind.HELLO, {"role": "peer", "device": self.plan.device, "epoch": self.epoch})
            self.links[device] = sock

    def run(self, rid: int, inputs: dict[str, np.ndarray]) -> None:
        """Request ``rid`` through this device's instructions; its outputs, then DONE, to the host."""
        for key in [k for k in self.stash if k[0] < rid]:  # an abandoned request's registers
            del self.stash[key]
        regs = dict(self.runtime.consts)
        regs["__inputs__"] = inputs
        with np.errstate(over="ignore"):  # as Runtime.run: sigmoid's exp may overflow to an exact 0
            for step, need, sends in self.schedule:
                for reg in need:
                    regs[reg] = self._take(rid, reg)
                step(regs)
                for reg, devices in sends:
                    for device in devices:
                        try:
                            wire.send(self.links[device], Kind.TENSOR, rid, reg, regs[reg])
                        except OSError as exc:
                            raise Abort(f"lost its link to device {device} ({exc})", device) from exc
        for name, key in self.out_keys:
            wire.send(self.host, Kind.OUTPUT, rid, name, regs[key])
        wire.send(self.host, Kind.DONE, rid)

    def _take(self, rid: int, reg: str) -> np.ndarray:
        # Twice the host's: the host times the request out first and names the device.
        deadline = time.monotonic() + 2 * self.timeout_s
        while (rid, reg) not in self.stash:
            if self.lost:
                raise self.lost
            left = deadline - time.monotonic()
            if left <= 0:
                raise Abort(f"waited {2 * self.timeout_s:g} s for register {reg!r} from a peer")
            frame = self.pump(left)
            if frame is not None:  # the host gave up on this request: its next word comes first
                self.held.append(frame)
                raise Abort("the host moved on")
        return self.stash.pop((rid, reg))


def serve(listener: socket.socket, once: bool) -> None:
    """Serve hosts on ``listener`` until killed (``once``: until the first host leaves)."""
    dev = Device(listener)
    inputs: dict[str, np.ndarray] = {}
    inputs_of = 0  # the request ``inputs`` belong to: a RUN takes its own, never another's
    while True:
        try:
            frame = dev.next_host_frame()
            if frame.kind is Kind.INPUT:
                if frame.rid != inputs_of:
                    inputs, inputs_of = {}, frame.rid
                inputs[frame.name] = frame.array
            elif frame.kind is Kind.RUN:
                try:
                    dev.run(frame.rid, inputs if inputs_of == frame.rid else {})
                except wire.Closed:
                    raise
                except Abort as exc:
                    wire.send_json(dev.host, Kind.ERROR, {"error": f"device {dev.plan.device} {exc}", "peer": exc.peer},
                                   frame.rid)
                except Exception as exc:  # a bug in a step: the host reports it, the device keeps serving
                    wire.send_json(dev.host, Kind.ERROR, {"error": f"device {dev.plan.device}: {type(exc).__name__}: "
                                                                   f"{exc}"}, frame.rid)
                inputs = {}
            elif frame.kind in (Kind.LOAD, Kind.WIRE):
                try:
                    (dev.load if frame.kind is Kind.LOAD else dev.wire_up)(wire.json_of(frame))
                except wire.Closed:
                    raise
                except Exception as exc:  # the host reports it as the load's failure
                    wire.send_json(dev.host, Kind.ERROR, {"error": f"{type(exc).__name__}: {exc}"})
                else:
                    wire.send(dev.host, Kind.READY)
            elif frame.kind is Kind.PING:
                wire.send(dev.host, Kind.READY, frame.rid)
        except (OSError, ValueError) as exc:  # the host has gone (or sent garbage): wait for the next
            if dev.host is not None:
                if not isinstance(exc, (wire.Closed, ConnectionResetError)):
                    print(f"device: dropping the host: {exc}", file=sys.stderr, flush=True)
                dev.drop_host()
            inputs = {}
            if once:
                return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backends.fpga.device", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0: any free one)")
    parser.add_argument("--once", action="store_true", help="exit when the first host disconnects")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    listener = socket.create_server((host.strip("[]"), int(port)))
    host, port = listener.getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)  # the spawning host reads the port from this line
    serve(listener, args.once)


if __name__ == "__main__":
    main()
