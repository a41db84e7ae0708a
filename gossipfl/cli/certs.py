"""``gossipfl certs DIR``: a network CA, one certificate per peer, wired into the configs."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, help="directory of peer configs (*.toml)")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help="extra host name or IP to put in every certificate (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from gossipfl.config import TLSConfig, load_peer_config, write_peer_config
    from gossipfl.transports.tls import create_ca, issue_certificate

    paths = sorted(args.directory.glob("*.toml"))
    if not paths:
        raise ValueError(f"{args.directory}: no peer configs (*.toml); run `gossipfl topology --out` first")
    configs = [load_peer_config(p) for p in paths]  # all validated before anything is written
    certs = args.directory / "certs"
    ca_cert, ca_key = create_ca(certs)
    for path, config in zip(paths, configs, strict=True):
        hosts = ["127.0.0.1", "localhost", config.host, *args.host]
        cert, key = issue_certificate(ca_cert, ca_key, config.id, hosts, certs)
        neighbours = tuple(
            dataclasses.replace(n, url=n.url.replace("http://", "https://", 1)) for n in config.neighbors
        )
        write_peer_config(config.with_changes(tls=TLSConfig(ca_cert, cert, key), neighbors=neighbours), path)
    print(f"wrote {certs}/ca.pem and {len(configs)} peer certificates; configs now use https")
    print(f"keep {ca_key} offline: whoever holds it can admit new peers")
    return 0
