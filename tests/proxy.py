"""Caddy in front of app processes, started from ``deploy/Caddyfile`` exactly as production starts it, for tests.

``start_proxy(upstreams, https_port=…, http_port=…, folder=…)`` runs Debian's ``caddy`` with the deployment's
Caddyfile and the variables it reads from the settings file (``GEOSERVICE_PUBLIC_URL``, ``GEOSERVICE_UPSTREAMS``,
``GEOSERVICE_TLS``, ``GEOSERVICE_HTTP_PORT``), on high ports, its admin endpoint off, its storage (certificates,
the internal CA) in the given folder and the system's trust store untouched. ``local_certificate(folder, names)``
issues a CA and a server certificate with the ``openssl`` command, for the "bureau's own certificate" mode; without
one, Caddy's internal CA signs (``tls internal``, as on an intranet). Either way ``proxy.ca_file`` is the CA.

    with start_proxy(["127.0.0.1:8001", "127.0.0.1:8002"], https_port=p1, http_port=p2, folder=tmp) as proxy:
        status, headers, body = proxy.get("/healthz")      # over TLS, the certificate checked against proxy.ca_file
        subprocess.run(["wrk", ..., proxy.url + "/healthz"])
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CADDYFILE = ROOT / "deploy" / "Caddyfile"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class Certificate:
    """A server certificate and its key (PEM files), the CA that signed it, and the key's SPKI pin.

    ``spki_sha256`` is what Chromium's ``--ignore-certificate-errors-spki-list`` takes: the base64 SHA-256 of the
    server key's DER SubjectPublicKeyInfo.
    """

    cert_file: Path
    key_file: Path
    ca_file: Path
    spki_sha256: str


def local_certificate(folder: Path, names: tuple[str, ...] = ("localhost",),
                      addresses: tuple[str, ...] = ("127.0.0.1",)) -> Certificate:
    """A new local CA and a server certificate for ``names`` and ``addresses`` it signed (``openssl`` CLI).

    Args:
        folder: where the PEM files are written (created if missing).
        names: DNS names of the server certificate (the first is its common name).
        addresses: IP addresses it is also valid for.

    Returns:
        The certificate, key, CA and the key's SPKI pin.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "server.ext"
    alt = [f"DNS:{n}" for n in names] + [f"IP:{a}" for a in addresses]
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(alt)}\n")
    openssl = ["openssl"]
    _run([*openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", ca_key, "-out", ca_cert, "-days", "2", "-subj", "/CN=geoservice test CA",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _run([*openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
          "-out", csr, "-subj", f"/CN={names[0]}"])
    _run([*openssl, "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
          "-days", "2", "-extfile", ext])
    public_der = subprocess.run([*openssl, "pkey", "-in", str(key), "-pubout", "-outform", "DER"],
                                check=True, capture_output=True).stdout
    spki = base64.b64encode(hashlib.sha256(public_der).digest()).decode()
    for path in (key, ca_key):
        path.chmod(0o644)  # read by caddy, which the tests run as root too; the files live in a tmp folder
    return Certificate(cert_file=cert, key_file=key, ca_file=ca_cert, spki_sha256=spki)


def _run(cmd: list) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


@dataclass
class Proxy:
    """A running Caddy: ``url`` is its https address (``https://HOST:PORT``), ``http_url`` the plain one."""

    url: str
    http_url: str
    host: str
    https_port: int
    http_port: int
    ca_file: Path
    log_file: Path
    access_log: Path
    process: subprocess.Popen = field(repr=False)

    def get(self, path: str, *, method: str = "GET", headers: dict | None = None,
            timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """One request over TLS to 127.0.0.1 with ``host`` as the name (SNI and Host), the certificate verified
        against ``ca_file``: (status, headers, body). Redirects are not followed."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = _PinnedHTTPSConnection(self.host, self.https_port, context=context, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop Caddy (SIGTERM: requests in flight finish, up to the Caddyfile's grace period)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 whatever the name: the tests' public names resolve nowhere else."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def proxy_environment(upstreams: list[str], *, https_port: int, http_port: int, host: str = "localhost",
                      certificate: Certificate | None = None, folder: Path,
                      settings_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Caddy runs with: the settings file's variables (``settings_env``), then the test's own."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(settings_env or {})}
    # Caddy keeps certificates and its internal CA under XDG_DATA_HOME, its autosaved config under
    # XDG_CONFIG_HOME: the test's own folder, never root's home.
    env.update({
        "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config"),
        "GEOSERVICE_PUBLIC_URL": f"https://{host}:{https_port}",
        "GEOSERVICE_UPSTREAMS": " ".join(upstreams),
        "GEOSERVICE_TLS": f"{certificate.cert_file} {certificate.key_file}" if certificate else "internal",
        "GEOSERVICE_HTTP_PORT": str(http_port),
        "GEOSERVICE_ACCESS_LOG": str(folder / "access.log"),
        "GEOSERVICE_CADDY_ADMIN": "off",
    })
    return env


def start_proxy(upstreams: list[str], *, https_port: int, http_port: int, folder: Path, host: str = "localhost",
                certificate: Certificate | None = None, settings_env: dict[str, str] | None = None,
                caddyfile: Path = CADDYFILE) -> Proxy:
    """Start Caddy from ``caddyfile`` in front of ``upstreams`` and wait until it answers over TLS.

    Args:
        upstreams: the app processes, ``127.0.0.1:PORT`` each.
        https_port: the TLS port (the public address is ``https://host:https_port``).
        http_port: the plain HTTP port, which redirects to https.
        folder: Caddy's storage, its log (``caddy.log``) and the access log (``access.log``); created if missing.
        host: the public host name (``GEOSERVICE_PUBLIC_URL``'s).
        certificate: the server certificate to serve; None: Caddy's internal CA issues one (``tls internal``).
        settings_env: the settings file's variables, under the test's own.
        caddyfile: the configuration (the deployment's by default).

    Returns:
        The running proxy; ``stop()`` it (or use it as a context manager).
    """
    folder.mkdir(parents=True, exist_ok=True)
    env = proxy_environment(upstreams, https_port=https_port, http_port=http_port, host=host,
                            certificate=certificate, folder=folder, settings_env=settings_env)
    log_file = folder / "caddy.log"
    with open(log_file, "w") as log:
        process = subprocess.Popen([CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    ca_file = certificate.ca_file if certificate else folder / "data/caddy/pki/authorities/local/root.crt"
    proxy = Proxy(url=f"https://{host}:{https_port}", http_url=f"http://{host}:{http_port}", host=host,
                  https_port=https_port, http_port=http_port, ca_file=ca_file, log_file=log_file,
                  access_log=folder / "access.log", process=process)
    try:
        _wait_for_tls(proxy)
    except BaseException:
        proxy.stop()
        raise
    return proxy


def _wait_for_tls(proxy: Proxy) -> None:
    """Until a TLS handshake for the public name succeeds with a certificate the CA vouches for."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"caddy exited with {proxy.process.returncode}: "
                               f"{proxy.log_file.read_text(errors='replace')[-2000:]}")
        try:
            context = ssl.create_default_context(cafile=str(proxy.ca_file))
            with socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5) as sock:
                with context.wrap_socket(sock, server_hostname=proxy.host):
                    return
        except (OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"caddy did not serve TLS on port {proxy.https_port} within {START_TIMEOUT_S} s: "
                               f"{proxy.log_file.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


# -- the deployment's other files, read as systemd reads them ---------------------------------------------------------

DEPLOY = ROOT / "deploy"
INSTALLED_PROGRAM = "/opt/geoservice/.venv/bin/geoservice"
"""The ``geoservice`` the units run (README "Deploying": the code in /opt/geoservice, its virtualenv in .venv)."""


def read_settings_file(path: Path = DEPLOY / "geoservice.env") -> dict[str, str]:
    """``KEY=VALUE`` lines of an EnvironmentFile (comments and blank lines skipped, one layer of quotes removed)."""
    values = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def unit_directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section → directive → values of a systemd unit file (a directive may repeat; an empty value resets it)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def unit_command(path: Path, instance: str = "", program: str | None = None) -> list[str]:
    """The ExecStart of a unit as an argument list, ``%i`` replaced by ``instance`` and the installed program by
    this checkout's (``program``, default the ``geoservice`` beside the running Python)."""
    import shlex
    import sys

    (line,) = unit_directives(path)["Service"]["ExecStart"]
    argv = shlex.split(line.replace("%i", instance))
    local = program or str(Path(sys.executable).parent / "geoservice")
    return [local if arg == INSTALLED_PROGRAM else arg for arg in argv]
