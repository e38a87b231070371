"""The Kafka clients' security settings: `MIC_KAFKA_SECURITY_PROTOCOL` and the SASL / SSL variables.

| variable | default | meaning |
|---|---|---|
| `MIC_KAFKA_SECURITY_PROTOCOL` | `PLAINTEXT` | `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` |
| `MIC_KAFKA_SASL_MECHANISM` | `SCRAM-SHA-512` | `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN` |
| `MIC_KAFKA_SASL_USERNAME` | empty | the SASL user (required with a SASL protocol) |
| `MIC_KAFKA_SASL_PASSWORD` | empty | its password; or `MIC_KAFKA_SASL_PASSWORD_FILE`, a file holding it |
| `MIC_KAFKA_SSL_CAFILE` | the system's CAs | PEM file of the CA certificate(s) that signed the brokers' |
| `MIC_KAFKA_SSL_CERTFILE` | none | client certificate, PEM (it may also hold the key): mutual TLS |
| `MIC_KAFKA_SSL_KEYFILE` | none | the client certificate's key, PEM, not encrypted |
| `MIC_KAFKA_SSL_CHECK_HOSTNAME` | `true` | a broker's certificate must name the host connected to |

`parse_kafka_security` checks them together and raises `SecuritySettingError` (which
`mic_pipeline.config.Settings.from_env` turns into its `ConfigError`: one line, exit 2): a SASL
protocol needs a user and exactly one password source; the files exist, the CA file loads as
certificates and the client certificate loads with its key (an encrypted key is refused, never
prompted for); a SASL or SSL variable set for a protocol that would ignore it is an error, not a
silent plaintext connection. This module imports nothing of the project: `config` imports it.

The password is a `Secret`: its repr is `'***'`, so client configurations logged by the libraries
(kafka-python's admin client logs its whole configuration at DEBUG) and dataclass reprs never show
it, and errors about it never quote it.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
PASSWORD = "MIC_KAFKA_SASL_PASSWORD"
PASSWORD_FILE = "MIC_KAFKA_SASL_PASSWORD_FILE"
SASL_VARIABLES = ("MIC_KAFKA_SASL_MECHANISM", "MIC_KAFKA_SASL_USERNAME", PASSWORD, PASSWORD_FILE)
SSL_VARIABLES = (
    "MIC_KAFKA_SSL_CAFILE",
    "MIC_KAFKA_SSL_CERTFILE",
    "MIC_KAFKA_SSL_KEYFILE",
    "MIC_KAFKA_SSL_CHECK_HOSTNAME",
)
_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class SecuritySettingError(ValueError):
    """A security variable holds a value the clients cannot use (`value` never holds a password)."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        self.variable = variable
        self.value = value
        self.problem = problem
        super().__init__(f"{variable}={value!r}: {problem}")


class Secret(str):
    """A string whose repr hides it (`'***'`); its value is the string itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'" if self else "''"


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of a process authenticates and encrypts."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: Secret = field(default=Secret(""), repr=False)
    sasl_password_file: Path | None = None
    """The file the password was read from (None: `MIC_KAFKA_SASL_PASSWORD`)."""
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client (None without TLS): TLS 1.2 or later, the CA file or the
        system's CAs, hostname verification unless turned off, the client certificate if any."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=_refuse_passphrase)
        return context

    @property
    def password_variable(self) -> str:
        """The variable the password came from: what an error about it names."""
        return PASSWORD if self.sasl_password_file is None else PASSWORD_FILE

    def environment(self) -> dict[str, str]:
        """The `MIC_KAFKA_*` security variables that read back as this (a password read from a file
        is passed as that file, not as its content)."""
        env = {"MIC_KAFKA_SECURITY_PROTOCOL": self.protocol}
        if self.uses_sasl:
            env["MIC_KAFKA_SASL_MECHANISM"] = self.sasl_mechanism
            env["MIC_KAFKA_SASL_USERNAME"] = self.sasl_username
            if self.sasl_password_file is not None:
                env[PASSWORD_FILE] = str(self.sasl_password_file)
            else:
                env[PASSWORD] = str(self.sasl_password)
        if self.uses_ssl:
            files = zip(SSL_VARIABLES, (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile), strict=False)
            env |= {variable: str(path) for variable, path in files if path is not None}
            env["MIC_KAFKA_SSL_CHECK_HOSTNAME"] = "true" if self.ssl_check_hostname else "false"
        return env


def parse_kafka_security(env: Mapping[str, str]) -> KafkaSecurity:
    """The security variables of `env`, checked together (see the module docstring)."""
    protocol = _choice(env, "MIC_KAFKA_SECURITY_PROTOCOL", SECURITY_PROTOCOLS)
    mechanism = _choice(env, "MIC_KAFKA_SASL_MECHANISM", SASL_MECHANISMS)
    wanted = KafkaSecurity(protocol=protocol)
    families = ((SASL_VARIABLES, wanted.uses_sasl, "SASL"), (SSL_VARIABLES, wanted.uses_ssl, "SSL"))
    for variables, used, kind in families:
        for variable in variables:
            if not used and env.get(variable, "").strip():
                shown = "***" if variable == PASSWORD else env[variable]
                problem = f"set, but MIC_KAFKA_SECURITY_PROTOCOL={protocol} uses no {kind}"
                raise SecuritySettingError(variable, shown, problem)
    username, password, password_file = ("", "", None)
    if wanted.uses_sasl:
        username, password, password_file = _sasl_credentials(env, protocol)
    certfile = _readable_file(env, "MIC_KAFKA_SSL_CERTFILE")
    keyfile = _readable_file(env, "MIC_KAFKA_SSL_KEYFILE")
    if keyfile is not None and certfile is None:
        raise SecuritySettingError("MIC_KAFKA_SSL_KEYFILE", str(keyfile), "needs MIC_KAFKA_SSL_CERTFILE")
    security = KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=username,
        sasl_password=Secret(password),
        sasl_password_file=password_file,
        ssl_cafile=_readable_file(env, "MIC_KAFKA_SSL_CAFILE"),
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        ssl_check_hostname=_flag(env, "MIC_KAFKA_SSL_CHECK_HOSTNAME", default=True),
    )
    check_ssl_files(security)
    return security


def _choice(env: Mapping[str, str], variable: str, choices: tuple[str, ...]) -> str:
    text = env.get(variable, "")
    if not text.strip():
        return choices[0]
    if text.strip().upper() not in choices:
        raise SecuritySettingError(variable, text, f"must be one of {', '.join(choices)}")
    return text.strip().upper()


def _flag(env: Mapping[str, str], variable: str, *, default: bool) -> bool:
    text = env.get(variable, "")
    if not text.strip():
        return default
    value = _FLAGS.get(text.strip().lower())
    if value is None:
        raise SecuritySettingError(variable, text, "must be true or false")
    return value


def _sasl_credentials(env: Mapping[str, str], protocol: str) -> tuple[str, str, Path | None]:
    """User, password and the file the password came from (None: the variable)."""
    username = env.get("MIC_KAFKA_SASL_USERNAME", "")
    if not username.strip():
        raise SecuritySettingError("MIC_KAFKA_SASL_USERNAME", username, f"required with {protocol}")
    if username != username.strip() or not username.isprintable():
        problem = "leading or trailing blanks, or control characters, in it"
        raise SecuritySettingError("MIC_KAFKA_SASL_USERNAME", username, problem)
    given, from_file = env.get(PASSWORD, ""), env.get(PASSWORD_FILE, "")
    if given and from_file:
        raise SecuritySettingError(PASSWORD, "***", f"{PASSWORD_FILE} is set too: keep one of the two")
    if given:
        return username, given, None
    path = _readable_file(env, PASSWORD_FILE)
    if path is None:
        raise SecuritySettingError(PASSWORD, "", f"required with {protocol} (or {PASSWORD_FILE})")
    try:
        password = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"unreadable ({exc.__class__.__name__})"
        raise SecuritySettingError(PASSWORD_FILE, str(path), problem) from None
    if not password:
        raise SecuritySettingError(PASSWORD_FILE, str(path), "the file is empty")
    return username, password, path


def _readable_file(env: Mapping[str, str], variable: str) -> Path | None:
    text = env.get(variable, "")
    if not text.strip():
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise SecuritySettingError(variable, text, "not a file" if path.exists() else "no such file")
    if not os.access(path, os.R_OK):
        raise SecuritySettingError(variable, text, "not readable by this user")
    return path


def _refuse_passphrase() -> str:
    raise ValueError("the key is encrypted")


def check_ssl_files(security: KafkaSecurity) -> None:
    """The CA file holds PEM certificates; the client certificate loads with its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if security.ssl_cafile is not None:
        try:
            context.load_verify_locations(cafile=security.ssl_cafile)
        except (ssl.SSLError, ValueError) as exc:
            problem = f"holds no PEM CA certificate ({exc.__class__.__name__})"
            raise SecuritySettingError("MIC_KAFKA_SSL_CAFILE", str(security.ssl_cafile), problem) from None
    if security.ssl_certfile is not None:
        try:
            context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile, password=_refuse_passphrase)
        except (ssl.SSLError, ValueError) as exc:
            variable = "MIC_KAFKA_SSL_KEYFILE" if security.ssl_keyfile else "MIC_KAFKA_SSL_CERTFILE"
            shown = str(security.ssl_keyfile or security.ssl_certfile)
            problem = f"certificate and key do not load: not PEM, not a pair, or an encrypted key ({exc})"
            raise SecuritySettingError(variable, shown, problem) from None
