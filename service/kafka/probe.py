"""A connection probe that tells why a broker refuses the service's clients.

kafka-python reports a wrong password, an untrusted certificate or a protocol mismatch only
as ``KafkaTimeoutError('Unable to bootstrap ...')`` (the cause goes to its log, and for a
rejected SCRAM password the broker just closes the connection). This probe repeats the
first steps of a client's connection by hand - TCP, the TLS handshake with the same checks,
then either the SASL handshake and authentication (PLAIN or SCRAM, RFC 5802) or an
ApiVersions and a Metadata request - and reports the step that failed as a
:class:`ProbeFailure` naming the setting to fix. It speaks only the oldest, non-flexible
versions of those four requests, which every broker from 1.0 to 4.x accepts.

Called by :func:`service.kafka.security.explain_client_error` and at start-up; it opens one
short-lived connection per bootstrap server and never raises for an unreachable broker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass

from service.config import KafkaSecuritySettings, KafkaSettings

_SASL_HANDSHAKE, _SASL_AUTHENTICATE, _API_VERSIONS, _METADATA = 17, 36, 18, 3
_UNSUPPORTED_SASL_MECHANISM = 33
_SETTING = "kafka.security."


@dataclass(frozen=True)
class ProbeFailure:
    """A reason no client of these settings can work: ``setting`` is the one to fix."""

    setting: str
    message: str


class _ClosedError(Exception):
    """The broker closed the connection before it answered."""


def probe(settings: KafkaSettings, timeout_s: float = 5.0) -> ProbeFailure | None:
    """Connect to each bootstrap server as a client would; return the first refusal.

    None when a server accepted the connection or none could be reached (an unreachable
    cluster is a retriable condition, not a setting to fix).
    """
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")
        try:
            failure = _probe_one(host, int(port), settings.security, timeout_s)
        except (OSError, _ClosedError, ValueError, struct.error):
            continue  # unreachable, reset or garbled: nothing to say about the settings
        return failure
    return None


def _probe_one(
    host: str, port: int, sec: KafkaSecuritySettings, timeout_s: float
) -> ProbeFailure | None:
    where = f"{host}:{port}"
    raw = socket.create_connection((host, port), timeout=timeout_s)
    sock: socket.socket = raw
    try:
        if sec.protocol.endswith("SSL"):
            try:
                sock = tls_context(sec).wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                return _untrusted(where, sec, exc)
            except ssl.SSLError as exc:
                return ProbeFailure(
                    _SETTING + "protocol",
                    f"the TLS handshake with {where} failed ({exc.reason or exc}): is that a "
                    f"TLS listener? (protocol is {sec.protocol})",
                )
            except (ConnectionResetError, TimeoutError) as exc:
                # A listener that is not TLS may hang up or never answer a ClientHello.
                return ProbeFailure(
                    _SETTING + "protocol",
                    f"{where} did not complete a TLS handshake ({exc!r}): is that a TLS "
                    f"listener? (protocol is {sec.protocol})",
                )
        if sec.protocol.startswith("SASL_"):
            return _authenticate(sock, where, sec)
        return _plain_requests(sock, where, sec)
    finally:
        sock.close()


def tls_context(sec: KafkaSecuritySettings) -> ssl.SSLContext:
    """The TLS context a client of these settings uses (as kafka-python builds it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = sec.ssl_check_hostname
    if sec.ssl_cafile is not None:
        ctx.load_verify_locations(cafile=str(sec.ssl_cafile))
    else:
        ctx.load_default_certs()
    if sec.ssl_certfile is not None:
        password = sec.ssl_key_password.get_secret_value() if sec.ssl_key_password else None
        ctx.load_cert_chain(
            str(sec.ssl_certfile), str(sec.ssl_keyfile) if sec.ssl_keyfile else None, password
        )
    return ctx


def _untrusted(
    where: str, sec: KafkaSecuritySettings, exc: ssl.SSLCertVerificationError
) -> ProbeFailure:
    reason = exc.verify_message or str(exc)
    if "mismatch" in reason.lower():
        return ProbeFailure(
            _SETTING + "ssl_check_hostname",
            f"the certificate of {where} is not valid for that name ({reason}): connect by "
            "a name the certificate lists in kafka.bootstrap_servers, or set "
            "kafka.security.ssl_check_hostname=false",
        )
    trusted = f"the CAs in {sec.ssl_cafile}" if sec.ssl_cafile else "the system's CAs"
    return ProbeFailure(
        _SETTING + "ssl_cafile",
        f"the certificate of {where} is not signed by {trusted} ({reason}): set "
        "kafka.security.ssl_cafile to the CA that signs the brokers' certificates",
    )


# -- Kafka requests, oldest versions ---------------------------------------------------------


def _request(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request and return the body of its response (after the correlation id)."""
    client = b"vibewatch-probe"
    header = struct.pack(">hhih", api_key, version, 1, len(client)) + client
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    size = struct.unpack(">i", _read(sock, 4))[0]
    return _read(sock, size)[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise _ClosedError
        out += chunk
    return out


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _plain_requests(
    sock: socket.socket, where: str, sec: KafkaSecuritySettings
) -> ProbeFailure | None:
    """ApiVersions then Metadata: a SASL listener answers the first and hangs up on the
    second; a TLS listener cannot parse either."""
    try:
        _request(sock, _API_VERSIONS, 0, b"")
        _request(sock, _METADATA, 0, struct.pack(">i", 0))
    except (_ClosedError, ConnectionResetError, TimeoutError, struct.error):
        needs = "SASL (protocol SASL_SSL)" if sec.protocol == "SSL" else (
            "TLS or SASL (protocol SSL, SASL_SSL or SASL_PLAINTEXT)"
        )
        return ProbeFailure(
            _SETTING + "protocol",
            f"{where} closed the connection on an unauthenticated {sec.protocol} request: "
            f"the listener needs {needs}",
        )
    return None


def _authenticate(
    sock: socket.socket, where: str, sec: KafkaSecuritySettings
) -> ProbeFailure | None:
    mechanism = sec.sasl_mechanism or ""
    try:
        reply = _request(sock, _SASL_HANDSHAKE, 1, _string(mechanism))
    except (_ClosedError, ConnectionResetError, TimeoutError):
        return ProbeFailure(
            _SETTING + "protocol",
            f"{where} closed the connection on a SASL handshake: the listener is not "
            f"{sec.protocol}",
        )
    error, offered = _handshake_reply(reply)
    if error == _UNSUPPORTED_SASL_MECHANISM or (error == 0 and mechanism not in offered):
        return ProbeFailure(
            _SETTING + "sasl_mechanism",
            f"{where} does not offer SASL {mechanism}; it offers {', '.join(offered) or 'none'}",
        )
    user = sec.sasl_username or ""
    password = sec.sasl_password.get_secret_value() if sec.sasl_password else ""
    try:
        if mechanism == "PLAIN":
            accepted = _authenticate_step(sock, f"\0{user}\0{password}".encode()) is not None
        else:
            accepted = _scram(sock, mechanism, user, password)
    except (_ClosedError, ConnectionResetError):
        accepted = False  # a broker hangs up on a failed authentication
    if accepted:
        return None
    return ProbeFailure(
        _SETTING + "sasl_password",
        f"{where} rejected the SASL {mechanism} credentials of user {user!r}: check "
        "kafka.security.sasl_password and sasl_username (and that the user has a "
        f"{mechanism} credential: kafka.security.sasl_mechanism)",
    )


def _handshake_reply(reply: bytes) -> tuple[int, list[str]]:
    error, count = struct.unpack(">hi", reply[:6])
    offered, pos = [], 6
    for _ in range(max(count, 0)):
        (length,) = struct.unpack(">h", reply[pos:pos + 2])
        offered.append(reply[pos + 2:pos + 2 + length].decode())
        pos += 2 + length
    return error, offered


def _authenticate_step(sock: socket.socket, token: bytes) -> bytes | None:
    """One SaslAuthenticate v0 exchange: the server's bytes, or None on an error code."""
    reply = _request(sock, _SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
    error, message_len = struct.unpack(">hh", reply[:4])
    if error:
        return None
    pos = 4 + max(message_len, 0)
    (length,) = struct.unpack(">i", reply[pos:pos + 4])
    return reply[pos + 4:pos + 4 + length]


def _scram(sock: socket.socket, mechanism: str, user: str, password: str) -> bool:
    """RFC 5802 client exchange; True when the server accepts and proves itself."""
    digest = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
    nonce = secrets.token_hex(16)
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    server_first = _authenticate_step(sock, f"n,,{first_bare}".encode())
    if server_first is None:
        return False
    fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
    if not fields["r"].startswith(nonce):
        return False
    salted = hashlib.pbkdf2_hmac(
        digest().name, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(digest(client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    server_final = _authenticate_step(sock, f"{without_proof},p={proof.decode()}".encode())
    if server_final is None or not server_final.startswith(b"v="):
        return False
    server_key = hmac.new(salted, b"Server Key", digest).digest()
    expected = hmac.new(server_key, auth_message, digest).digest()
    return hmac.compare_digest(base64.b64decode(server_final[2:]), expected)
