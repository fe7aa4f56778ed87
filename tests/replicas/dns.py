"""A tiny authoritative DNS responder (dnslib): one name, several A records.

Stands in for a Kubernetes headless Service, whose name resolves to every ready pod.
Run as ``python -m tests.replicas.dns --listen ADDR --name NAME --a IP --a IP``.
"""
from __future__ import annotations

import argparse
import time

from dnslib import QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ListResolver(BaseResolver):
    def __init__(self, name: str, addresses: list[str], ttl: int) -> None:
        self.name = name.rstrip(".") + "."
        self.addresses = addresses
        self.ttl = ttl

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname)
        if qname.lower() == self.name.lower() and request.q.qtype in (QTYPE.A, QTYPE.ANY):
            for address in self.addresses:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=self.ttl))
        elif qname.lower() != self.name.lower():
            reply.header.rcode = 3  # NXDOMAIN
        return reply  # the name, but no AAAA/SRV/TXT: an empty answer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--name", required=True)
    p.add_argument("--a", action="append", required=True)
    p.add_argument("--ttl", type=int, default=1)
    args = p.parse_args()
    resolver = ListResolver(args.name, args.a, args.ttl)
    logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [DNSServer(resolver, address=args.listen, port=args.port, logger=logger, tcp=tcp) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    print("dns ready", flush=True)
    while all(s.isAlive() for s in servers):
        time.sleep(0.5)


if __name__ == "__main__":
    main()
