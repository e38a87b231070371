"""Does the broker accept this process's security settings? A bounded check before the first client.

The client libraries report a wrong password, an untrusted certificate or a protocol mismatch
only as "unable to bootstrap" after their timeout (kafka-python) or at once but without the cause
(aiokafka), and kafka-python retries meanwhile. `verify_access` finds the cause itself, in at most
`ACCESS_TIMEOUT_S`, talking to the first bootstrap server that accepts a TCP connection with the
same TLS context and credentials the clients use (`mic_pipeline.kafka_clients`):

1. TLS (SSL, SASL_SSL): the handshake. An unknown CA or a certificate for another host is reported
   as such; a listener that does not speak TLS is recognised by a plaintext Kafka request.
2. `ApiVersions`, answered before any login. No answer on a plaintext connection: the listener
   speaks TLS if a TLS handshake (unverified: a probe only) completes.
3. SASL: the mechanism handshake (the broker lists what it enables) and the login (SCRAM or PLAIN);
   Kafka answers an unknown user and a wrong password alike, so the message names both.
   Without SASL, a `Metadata` request: a SASL listener closes the connection instead.

A problem it positively recognises raises `KafkaAccessError`: a `ConfigError` (one line naming the
setting to fix and what is wrong; `mic-pipeline` prints it and exits 2 wherever it is not caught
first) and a kafka-python `KafkaError` (the commands' Kafka handlers catch it). A broker that
cannot be reached at all is not judged here: the clients report it as they always did. A check
that passes is remembered for the process (same bootstrap and security settings).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

from kafka.errors import KafkaError

from mic_pipeline.config import ConfigError, Settings
from mic_pipeline.kafka_settings import KafkaSecurity

ACCESS_TIMEOUT_S = 10.0
_CLIENT_ID = b"mic-access-check"
_API_VERSIONS, _METADATA, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 3, 17, 36
_UNSUPPORTED_SASL_MECHANISM, _ILLEGAL_SASL_STATE, _SASL_AUTHENTICATION_FAILED = 33, 34, 58
_MAX_RESPONSE_BYTES = 1 << 20
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH (and 64, IP address mismatch)
_checked: set[tuple[str, KafkaSecurity]] = set()
_lock = threading.Lock()


class KafkaAccessError(ConfigError, KafkaError):  # type: ignore[misc]
    """The broker refuses this process's security settings; the message names the setting."""

    def __str__(self) -> str:
        return f"{self.variable}={self.value!r}: {self.problem}"


class _Closed(Exception):
    """The broker closed the connection (or sent nothing) instead of answering."""


def verify_access(settings: Settings, *, timeout_s: float = ACCESS_TIMEOUT_S) -> None:
    """Raise `KafkaAccessError` when the broker refuses `settings` (see the module docstring)."""
    security = settings.kafka_security
    key = (settings.kafka_bootstrap, security)
    with _lock:
        if key in _checked:
            return
    problem = diagnose(settings, timeout_s=timeout_s)
    if problem is not None:
        raise problem
    with _lock:
        _checked.add(key)


def diagnose(settings: Settings, *, timeout_s: float = ACCESS_TIMEOUT_S) -> KafkaAccessError | None:
    """The access problem of `settings` at their first answering bootstrap server, or None."""
    deadline = time.monotonic() + timeout_s
    for host, port in _servers(settings.kafka_bootstrap):
        try:
            sock = socket.create_connection((host, port), timeout=_remaining(deadline))
        except OSError:
            continue
        with sock:
            return _Probe(settings, host, port, deadline).run(sock)
    return None


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for entry in bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        servers.append((host.strip("[]"), int(port)))
    return servers


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


class _Probe:
    """One diagnosis: the TLS, Kafka and SASL steps on one connection."""

    def __init__(self, settings: Settings, host: str, port: int, deadline: float) -> None:
        self.settings = settings
        self.security: KafkaSecurity = settings.kafka_security
        self.host, self.port, self.deadline = host, port, deadline
        self.where = f"{host}:{port}"
        self.correlation = 0
        self.versions: dict[int, tuple[int, int]] = {}

    def supports(self, api_key: int, version: int) -> bool:
        """Whether the broker's `ApiVersions` answer lists `version` of `api_key`."""
        low, high = self.versions.get(api_key, (1, 0))
        return low <= version <= high

    def error(self, variable: str, value: str, problem: str) -> KafkaAccessError:
        return KafkaAccessError(variable, value, problem)

    def protocol_error(self, problem: str) -> KafkaAccessError:
        return self.error("MIC_KAFKA_SECURITY_PROTOCOL", self.security.protocol, problem)

    def run(self, sock: socket.socket) -> KafkaAccessError | None:
        connection: socket.socket = sock
        if self.security.uses_ssl:
            tls = self.handshake(sock)
            if isinstance(tls, KafkaAccessError) or tls is None:
                return tls
            connection = tls
        try:
            self.versions = _api_versions(self.request(connection, _API_VERSIONS, 0, b""))
        except ssl.SSLError as exc:
            if "CERTIFICATE_REQUIRED" in str(exc).upper():
                cert = str(self.security.ssl_certfile or "")
                problem = f"the broker at {self.where} requires a client certificate (mutual TLS): set it"
                return self.error("MIC_KAFKA_SSL_CERTFILE", cert, problem + " and MIC_KAFKA_SSL_KEYFILE")
            return None
        except (_Closed, OSError):
            if not self.security.uses_ssl and self.speaks_tls():
                return self.protocol_error(
                    f"the listener at {self.where} speaks TLS: set SSL or SASL_SSL, with MIC_KAFKA_SSL_CAFILE"
                )
            return None
        if self.security.uses_sasl:
            return self.login(connection) if self.supports(_SASL_HANDSHAKE, 1) and self.supports(
                _SASL_AUTHENTICATE, 0) else None  # fmt: skip
        if not self.supports(_METADATA, 4):  # a broker this check does not speak to: not judged
            return None
        try:
            self.request(connection, _METADATA, 4, struct.pack(">ib", 0, 0))
        except (_Closed, OSError):
            return self.protocol_error(
                f"the listener at {self.where} requires a SASL login: set SASL_SSL (or SASL_PLAINTEXT) "
                "with MIC_KAFKA_SASL_USERNAME and MIC_KAFKA_SASL_PASSWORD or _FILE"
            )
        return None

    def handshake(self, sock: socket.socket) -> ssl.SSLSocket | KafkaAccessError | None:
        context = self.security.ssl_context()
        assert context is not None
        sock.settimeout(_remaining(self.deadline))
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            if exc.verify_code in (_HOSTNAME_MISMATCH, 64):
                return self.error("MIC_KAFKA_BOOTSTRAP", self.settings.kafka_bootstrap, (
                    f"the certificate of the broker at {self.where} is not for {self.host} ({reason}): "
                    "connect by a name it holds, or set MIC_KAFKA_SSL_CHECK_HOSTNAME=false"
                ))  # fmt: skip
            cafile = self.security.ssl_cafile
            trusted = "a CA in this file" if cafile else "a CA this system trusts: set it to the broker's CA"
            problem = f"the certificate of the broker at {self.where} is not signed by {trusted}"
            return self.error("MIC_KAFKA_SSL_CAFILE", str(cafile or ""), f"{problem} (CA mismatch: {reason})")
        except (ssl.SSLError, OSError):
            if self.speaks_plain_kafka():
                return self.protocol_error(
                    f"the listener at {self.where} does not speak TLS: set PLAINTEXT or SASL_PLAINTEXT, "
                    "or use the broker's TLS port in MIC_KAFKA_BOOTSTRAP"
                )
            return None

    def login(self, connection: socket.socket) -> KafkaAccessError | None:
        security = self.security
        mechanism = security.sasl_mechanism
        try:
            answer = self.request(connection, _SASL_HANDSHAKE, 1, _string(mechanism))
            code, offered = struct.unpack(">h", answer[:2])[0], _strings(answer[2:])
        except (_Closed, OSError, struct.error):
            return None
        if code == _UNSUPPORTED_SASL_MECHANISM:
            problem = f"the broker at {self.where} does not enable it; it offers {', '.join(offered)}"
            return self.error("MIC_KAFKA_SASL_MECHANISM", mechanism, problem)
        if code == _ILLEGAL_SASL_STATE:
            plain = "SSL" if security.uses_ssl else "PLAINTEXT"
            return self.protocol_error(f"the listener at {self.where} does not use SASL: set {plain}")
        if code != 0:
            return None
        try:
            refused = self.authenticate(connection, mechanism)
        except (_Closed, OSError, ValueError, struct.error):
            return None
        if not refused:
            return None
        shown = "***" if security.sasl_password_file is None else str(security.sasl_password_file)
        return self.error(security.password_variable, shown, (
            f"the broker at {self.where} refused the {mechanism} login of user {security.sasl_username!r}: "
            "wrong password or unknown user (check MIC_KAFKA_SASL_USERNAME too)"
        ))  # fmt: skip

    def authenticate(self, connection: socket.socket, mechanism: str) -> bool:
        """Log in; True when the broker refused the credentials."""
        user, password = self.security.sasl_username, str(self.security.sasl_password)
        if mechanism == "PLAIN":
            code, _ = self.sasl_step(connection, f"\0{user}\0{password}".encode())
            return code == _SASL_AUTHENTICATION_FAILED
        from kafka.net.sasl.scram import ScramClient

        scram = ScramClient(user, password, mechanism)
        code, server_first = self.sasl_step(connection, scram.first_message())
        if code != 0:
            return code == _SASL_AUTHENTICATION_FAILED
        scram.process_server_first_message(server_first)
        code, _ = self.sasl_step(connection, scram.final_message())
        return code == _SASL_AUTHENTICATION_FAILED

    def sasl_step(self, connection: socket.socket, data: bytes) -> tuple[int, bytes]:
        answer = self.request(connection, _SASL_AUTHENTICATE, 0, struct.pack(">i", len(data)) + data)
        code, message_length = struct.unpack(">hh", answer[:4])
        rest = answer[4 + max(0, message_length) :]
        (length,) = struct.unpack(">i", rest[:4])
        return code, rest[4 : 4 + max(0, length)]

    def request(self, connection: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation += 1
        header = struct.pack(">hhih", api_key, version, self.correlation, len(_CLIENT_ID)) + _CLIENT_ID
        connection.settimeout(_remaining(self.deadline))
        connection.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", _read(connection, 4))
        if not 4 <= size <= _MAX_RESPONSE_BYTES:
            raise _Closed(f"response of {size} bytes")
        return _read(connection, size)[4:]

    def speaks_tls(self) -> bool:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a probe of the protocol only: nothing is sent over it
        try:
            with socket.create_connection((self.host, self.port), timeout=_remaining(self.deadline)) as sock:
                context.wrap_socket(sock, server_hostname=self.host).close()
        except OSError:
            return False
        return True

    def speaks_plain_kafka(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=_remaining(self.deadline)) as sock:
                self.request(sock, _API_VERSIONS, 0, b"")
        except (_Closed, OSError):
            return False
        return True


def _read(connection: socket.socket, count: int) -> bytes:
    chunks, missing = [], count
    while missing:
        chunk = connection.recv(min(missing, 65536))
        if not chunk:
            raise _Closed("connection closed")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _api_versions(answer: bytes) -> dict[int, tuple[int, int]]:
    """`ApiVersions` v0: error code, then (api key, min version, max version) per API."""
    if len(answer) < 6:
        return {}
    (count,) = struct.unpack(">i", answer[2:6])
    count = max(0, min(count, (len(answer) - 6) // 6))
    entries = (struct.unpack(">hhh", answer[6 + 6 * i : 12 + 6 * i]) for i in range(count))
    return {key: (low, high) for key, low, high in entries}


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _strings(data: bytes) -> list[str]:
    (count,) = struct.unpack(">i", data[:4])
    result, offset = [], 4
    for _ in range(max(0, count)):
        (length,) = struct.unpack(">h", data[offset : offset + 2])
        result.append(data[offset + 2 : offset + 2 + length].decode(errors="replace"))
        offset += 2 + length
    return result
