"""The end-to-end demo behind `make demo`: a server, a vendor, a submission, a refusal, a score.

Every step runs the real `assay` command against a real server on the embedded default
(SQLite and local disk in a fresh ASSAY_HOME), and prints the command before its output, so
the demo doubles as a walk-through a person can repeat by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

MARKER = ".assay-demo-home"


EXAMPLE_POLICY = Path(__file__).resolve().parents[1] / "policies" / "example-binary.yaml"


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _banner(text: str) -> None:
    print(f"\n\033[1;36m== {text}\033[0m", flush=True)


class Demo:
    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.assay = str(Path(sys.executable).with_name("assay"))
        self.env = {**os.environ, "ASSAY_HOME": str(home), "ASSAY_URL": self.url}
        self.env.pop("ASSAY_DATABASE_URL", None)
        self.env.pop("ASSAY_TOKEN", None)

    def run(
        self, *args: str, token: str | None = None, check: bool = True, capture: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Runs `assay ARGS`, printing the command line, and its output unless captured."""
        shown = shlex.join(["assay", *args])
        print(f"\033[2m$ {shown}\033[0m", flush=True)
        env = {**self.env, **({"ASSAY_TOKEN": token} if token else {})}
        result = subprocess.run(
            [self.assay, *args], env=env, text=True, capture_output=capture, check=False
        )
        if check and result.returncode != 0:
            if capture:
                print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
            raise SystemExit(f"demo step failed: {shown} (exit {result.returncode})")
        return result

    def run_json(self, *args: str, token: str | None = None) -> Any:
        result = self.run(*args, "--json", token=token, capture=True)
        return json.loads(result.stdout)

    def start_server(self) -> subprocess.Popen[bytes]:
        print(f"\033[2m$ assay serve --port {self.port}\033[0m", flush=True)
        log = open(self.home / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
        server = subprocess.Popen(
            [self.assay, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the server exited early; see {self.home / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    print(f"server up at {self.url} (log: {self.home / 'server.log'})")
                    return server
            except httpx.TransportError:
                time.sleep(0.2)
        server.terminate()
        raise SystemExit("the server did not answer /api/v1/health within 30 s")


class _TouchOnLoad:
    """Unpickling this creates a file: the kind of payload a `.pt` checkpoint can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def _fresh_home(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists():
            raise SystemExit(
                f"{home} exists and was not made by the demo; choose another --home or remove it."
            )
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `make demo`; deleted and re-created on each run\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assay end-to-end demo.")
    parser.add_argument("--home", type=Path, default=Path(".assay-demo"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--no-serve", action="store_true", help="stop the server at the end instead of serving"
    )
    args = parser.parse_args(argv)

    home = args.home.resolve()
    _fresh_home(home)
    demo = Demo(home, _free_port(args.port))

    _banner("1. Set up a fresh installation (SQLite and local disk in " + str(home) + ")")
    demo.run("db", "upgrade")
    admin = demo.run_json("admin", "init")["token"]
    print("admin token issued (shown once; the demo keeps it in memory)")

    _banner("2. Start the server")
    server = demo.start_server()
    try:
        _banner("3. The admin registers a vendor and issues its engineer a token")
        vendor = demo.run_json("vendor", "create", "acme-imaging", token=admin)
        print(f"vendor acme-imaging: {vendor['id']}")
        created = demo.run_json(
            "token", "create", "--role", "vendor", "--name", "acme-engineer",
            "--vendor", vendor["id"], token=admin,
        )  # fmt: skip
        vendor_token = created["token"]
        print(f"vendor token {created['id']} for principal {created['name']}")
        demo.run("whoami", token=vendor_token)

        _banner("4. The vendor writes the example model (exported from PyTorch to ONNX)")
        work = home / "vendor-workspace"
        demo.run("example-model", "--out", str(work))
        manifest = json.loads((work / "manifest.json").read_text())

        _banner("5. The vendor creates its model and submits version 1 over HTTP")
        model = demo.run_json("model", "create", manifest["name"], token=vendor_token)
        demo.run(
            "submit", model["id"], "--artifact", str(work / "model.onnx"),
            "--manifest", str(work / "manifest.json"), token=vendor_token,
        )  # fmt: skip
        demo.run("versions", model["id"], token=vendor_token)

        _banner("6. A pickle disguised as ONNX is refused, and never unpickled")
        marker = home / "PWNED-if-this-exists"
        evil = work / "checkpoint.onnx"
        evil.write_bytes(pickle.dumps(_TouchOnLoad(marker)))
        refused = demo.run(
            "submit", model["id"], "--artifact", str(evil),
            "--manifest", str(work / "manifest.json"), token=vendor_token, check=False,
        )  # fmt: skip
        print(f"exit code {refused.returncode}; marker file created: {marker.exists()}")
        if refused.returncode != 1 or marker.exists():
            raise SystemExit("the pickle upload was not refused as it should be")

        _banner("7. The audit chain verifies")
        demo.run("audit", "verify")
        demo.run("audit", "list", token=admin)

        _banner("8. The hospital scores a product's outputs locally (no server, model or images)")
        hospital = home / "hospital-workspace"
        demo.run("example-predictions", "--out", str(hospital))
        demo.run(
            "score", str(hospital / "predictions.csv"), "--baseline",
            str(hospital / "baseline.csv"), "--policy", str(EXAMPLE_POLICY),
        )  # fmt: skip

        if args.no_serve:
            _banner("Done (--no-serve): stopping the server")
            return 0
        _banner(f"The server keeps serving at {demo.url} (API docs: {demo.url}/docs)")
        print(f"export ASSAY_URL={demo.url}")
        print(f"export ASSAY_TOKEN={admin}   # the admin token")
        print(f"export ASSAY_HOME={home}")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            server.wait()
        except KeyboardInterrupt:
            print("\nstopping")
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    raise SystemExit(main())
