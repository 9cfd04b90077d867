"""A local broker with a SASL_SSL listener, and the certificates it needs (made with openssl).

Used by the security tests: :func:`make_certificates` writes a throw-away CA, a broker
certificate for 127.0.0.1/localhost signed by it, and a second CA that signed nothing (a
client that trusts only that one must reject the broker). :func:`start_secure_broker`
starts ``deploy/kafka/local_kafka.py`` with the SASL_SSL listener and SCRAM users added at
format time.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

#: SCRAM users of the secured test broker (name -> password).
USERS = {"vibewatch": "vibewatch-secret", "reader": "reader-secret"}


@dataclass(frozen=True)
class Certificates:
    ca: Path  #: PEM CA certificate that signed the broker's certificate
    broker_keystore: Path  #: broker key (PKCS#8) + certificate + CA, for ssl.keystore.type=PEM
    other_ca: Path  #: a CA that signed nothing here
    client_cert: Path  #: a client certificate signed by ``ca`` (for mTLS settings)
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("openssl not found: install the Debian package 'openssl'")
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def _ca(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=vibewatch test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )  # fmt: skip


def _signed(name: str, subject: str, san: str | None, cwd: Path) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-noenc", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    extensions = cwd / f"{name}.ext"
    extensions.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", str(extensions),
        cwd=cwd,
    )  # fmt: skip


def make_certificates(directory: Path) -> Certificates:
    """Write the test CA, the broker's keystore and a client certificate into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _ca("ca", directory)
    _ca("other-ca", directory)
    _signed("broker", "/CN=localhost", "IP:127.0.0.1,DNS:localhost", directory)
    _signed("client", "/CN=vibewatch-client", None, directory)
    keystore = directory / "broker-keystore.pem"
    keystore.write_text(
        (directory / "broker.key").read_text()
        + (directory / "broker.pem").read_text()
        + (directory / "ca.pem").read_text()
    )
    return Certificates(
        ca=directory / "ca.pem",
        broker_keystore=keystore,
        other_ca=directory / "other-ca.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


@dataclass(frozen=True)
class SecureBroker:
    broker: Any  #: local_kafka.LocalKafka
    certificates: Certificates
    sasl_port: int

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def env(self, mechanism: str = "SCRAM-SHA-512", user: str = "vibewatch",
            password: str | None = None, cafile: Path | None = None) -> dict[str, str]:
        """``VIBEWATCH_KAFKA__*`` variables for a client of the SASL_SSL listener."""
        return {
            "VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS": self.sasl_bootstrap,
            "VIBEWATCH_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
            "VIBEWATCH_KAFKA__SECURITY__SASL_MECHANISM": mechanism,
            "VIBEWATCH_KAFKA__SECURITY__SASL_USERNAME": user,
            "VIBEWATCH_KAFKA__SECURITY__SASL_PASSWORD": password or USERS[user],
            "VIBEWATCH_KAFKA__SECURITY__SSL_CAFILE": str(cafile or self.certificates.ca),
        }


def start_secure_broker(local_kafka: ModuleType, directory: Path) -> SecureBroker:
    """Start a single-node broker with PLAINTEXT and SASL_SSL listeners on free ports.

    SCRAM-SHA-256/512 users (:data:`USERS`) are added at format time; the same users can log
    in with PLAIN. The caller stops ``.broker``.
    """
    certificates = make_certificates(directory / "tls")
    port, controller_port, sasl_port = local_kafka.free_ports(3)
    listener = local_kafka.SaslSslListener(
        sasl_port, certificates.broker_keystore, scram_users=USERS, plain_users=USERS
    )
    broker = local_kafka.LocalKafka(directory / "broker", port, controller_port,
                                    sasl_ssl=listener)
    broker.start()
    return SecureBroker(broker, certificates, sasl_port)
