"""Kafka security settings, client options and TLS material, without a broker.

- every `MIC_KAFKA_*` security variable is checked at start: one line naming it, exit 2; a password
  never appears in an error, a repr or the options' repr;
- the options every client gets (kafka-python, aiokafka, faust) come from the settings, and a
  caller cannot override them;
- a scan of the source tree: every Kafka client constructed anywhere in the pipeline's packages
  gets its options from `mic_pipeline.kafka_clients` (a client added without them fails here);
- the throw-away CA, certificates and files of the secured broker (mode 0600), its properties and
  ACLs; a certificate for another host is diagnosed as such by the access check.
"""

from __future__ import annotations

import ast
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mic_pipeline.config import ConfigError, Settings
from mic_pipeline.infra.kafka_tls import KeyPair, issue, new_authority, subject_principal, write_private
from mic_pipeline.kafka_clients import (
    SECURITY_OPTIONS,
    aiokafka_options,
    kafka_python_options,
    security_options,
)
from mic_pipeline.kafka_settings import KafkaSecurity, Secret, parse_kafka_security

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture(scope="module")
def authority() -> KeyPair:
    return new_authority("test CA")


@pytest.fixture
def ca_file(tmp_path: Path, authority: KeyPair) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(authority.cert_pem)
    return path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "user.password"
    write_private(path, f"{PASSWORD}\n".encode())
    return path


def sasl_ssl(ca_file: Path, password_file: Path, **extra: str) -> dict[str, str]:
    return {
        "MIC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MIC_KAFKA_SASL_USERNAME": "pipeline",
        "MIC_KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "MIC_KAFKA_SSL_CAFILE": str(ca_file),
        **extra,
    }


def problem(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(environ)
    return str(error.value)


# -- settings ----------------------------------------------------------------------------------------


def test_the_default_is_plaintext_without_credentials() -> None:
    security = Settings.from_env({}).kafka_security
    assert security == KafkaSecurity() and security.protocol == "PLAINTEXT"
    assert not security.uses_sasl and not security.uses_ssl and security.ssl_context() is None
    assert security_options(security) == {"security_protocol": "PLAINTEXT"}


def test_a_complete_sasl_ssl_environment_is_read(ca_file: Path, password_file: Path) -> None:
    security = Settings.from_env(sasl_ssl(ca_file, password_file, MIC_KAFKA_SASL_MECHANISM="scram-sha-256"))
    s = security.kafka_security
    assert (s.protocol, s.sasl_mechanism, s.sasl_username) == ("SASL_SSL", "SCRAM-SHA-256", "pipeline")
    assert s.sasl_password == PASSWORD  # the file's trailing newline is not part of it
    assert (s.sasl_password_file, s.ssl_cafile, s.ssl_check_hostname) == (password_file, ca_file, True)
    assert s.password_variable == "MIC_KAFKA_SASL_PASSWORD_FILE"
    assert parse_kafka_security(s.environment()) == s  # what children are given reads back the same
    # and `run`/`demo` hand them to their children with the rest of the settings, from any parent
    from mic_pipeline.ops.children import settings_environment

    assert Settings.from_env(settings_environment(security)) == security


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "TLS"},
         "MIC_KAFKA_SECURITY_PROTOCOL='TLS': must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MIC_KAFKA_SASL_MECHANISM": "GSSAPI"},
         "MIC_KAFKA_SASL_MECHANISM='GSSAPI': must be one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
         "MIC_KAFKA_SASL_USERNAME='': required with SASL_PLAINTEXT"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "pipeline "},
         "MIC_KAFKA_SASL_USERNAME='pipeline ': leading or trailing blanks, or control characters, in it"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "a\x1bb"},
         "MIC_KAFKA_SASL_USERNAME='a\\x1bb': leading or trailing blanks, or control characters, in it"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "u"},
         "MIC_KAFKA_SASL_PASSWORD='': required with SASL_PLAINTEXT (or MIC_KAFKA_SASL_PASSWORD_FILE)"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "u",
          "MIC_KAFKA_SASL_PASSWORD": PASSWORD, "MIC_KAFKA_SASL_PASSWORD_FILE": "/x"},
         "MIC_KAFKA_SASL_PASSWORD='***': MIC_KAFKA_SASL_PASSWORD_FILE is set too: keep one of the two"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "u",
          "MIC_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
         "MIC_KAFKA_SASL_PASSWORD_FILE='/nonexistent/pw': no such file"),
        ({"MIC_KAFKA_SASL_USERNAME": "u"},
         "MIC_KAFKA_SASL_USERNAME='u': set, but MIC_KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL"),
        ({"MIC_KAFKA_SASL_PASSWORD": PASSWORD},
         "MIC_KAFKA_SASL_PASSWORD='***': set, but MIC_KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "u",
          "MIC_KAFKA_SASL_PASSWORD": PASSWORD, "MIC_KAFKA_SSL_CAFILE": "/ca.pem"},
         "MIC_KAFKA_SSL_CAFILE='/ca.pem': set, but MIC_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT uses no SSL"),
        ({"MIC_KAFKA_SECURITY_PROTOCOL": "SSL", "MIC_KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
         "MIC_KAFKA_SSL_CHECK_HOSTNAME='maybe': must be true or false"),
    ],
)  # fmt: skip
def test_each_security_variable_is_checked_and_no_password_is_shown(
    environ: dict[str, str], expected: str
) -> None:
    text = problem(environ)
    assert text == expected
    assert PASSWORD not in text


def test_files_are_checked_for_what_they_hold(
    tmp_path: Path, ca_file: Path, password_file: Path, authority: KeyPair
) -> None:
    empty = tmp_path / "empty.password"
    empty.write_text("\n")
    expected = f"MIC_KAFKA_SASL_PASSWORD_FILE={str(empty)!r}: the file is empty"
    assert problem(sasl_ssl(ca_file, empty)) == expected
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    assert problem(sasl_ssl(not_pem, password_file)).startswith(
        f"MIC_KAFKA_SSL_CAFILE={str(not_pem)!r}: holds no PEM CA certificate"
    )
    client = issue(authority, "client", ["client.example"])
    other = issue(authority, "other", ["other.example"])
    cert, wrong_key = tmp_path / "client.pem", tmp_path / "other.key"
    cert.write_bytes(client.cert_pem)
    write_private(wrong_key, other.key_pem)
    mismatched = sasl_ssl(
        ca_file, password_file, MIC_KAFKA_SSL_CERTFILE=str(cert), MIC_KAFKA_SSL_KEYFILE=str(wrong_key)
    )
    assert problem(mismatched).startswith(
        f"MIC_KAFKA_SSL_KEYFILE={str(wrong_key)!r}: certificate and key do not load"
    )
    key_alone = sasl_ssl(ca_file, password_file, MIC_KAFKA_SSL_KEYFILE=str(wrong_key))
    assert problem(key_alone) == f"MIC_KAFKA_SSL_KEYFILE={str(wrong_key)!r}: needs MIC_KAFKA_SSL_CERTFILE"
    key = tmp_path / "client.key"
    write_private(key, client.key_pem)
    mutual = Settings.from_env(
        sasl_ssl(ca_file, password_file, MIC_KAFKA_SSL_CERTFILE=str(cert), MIC_KAFKA_SSL_KEYFILE=str(key))
    )
    assert mutual.kafka_security.ssl_context() is not None


def test_a_password_appears_in_no_repr(ca_file: Path, password_file: Path) -> None:
    settings = Settings.from_env(sasl_ssl(ca_file, password_file))
    direct = Settings.from_env(
        {"MIC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MIC_KAFKA_SASL_USERNAME": "u",
         "MIC_KAFKA_SASL_PASSWORD": PASSWORD}
    )  # fmt: skip
    options = security_options(settings.kafka_security)
    assert options["sasl_plain_password"] == PASSWORD  # the libraries get the real value
    for shown in (repr(settings), repr(direct), str(settings.kafka_security), repr(options), f"{options}"):
        assert PASSWORD not in shown
    assert repr(Secret(PASSWORD)) == "'***'" and repr(Secret("")) == "''"


def test_the_command_reports_a_security_variable_in_one_line_with_exit_2(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIC_")}
    environ |= {"MIC_STATE_DIR": str(tmp_path), "MIC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "MIC_KAFKA_SASL_USERNAME": "producer", "MIC_KAFKA_SASL_PASSWORD": PASSWORD,
                "MIC_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")}  # fmt: skip
    for command in (["topics", "create"], ["simulate", "--rate", "1", "--duration", "1"], ["sink", "sql"]):
        done = subprocess.run(
            [sys.executable, "-m", "mic_pipeline.cli", *command],
            env=environ, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        expected = f"MIC_KAFKA_SSL_CAFILE={str(tmp_path / 'missing.pem')!r}: no such file"
        assert (done.returncode, done.stdout) == (2, ""), command
        assert done.stderr == f"mic-pipeline: configuration error: {expected}\n", command


# -- options -----------------------------------------------------------------------------------------


def test_the_options_carry_the_security_settings(ca_file: Path, password_file: Path) -> None:
    security = Settings.from_env(sasl_ssl(ca_file, password_file)).kafka_security
    options = security_options(security)
    assert {k: v for k, v in options.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pipeline",
        "sasl_plain_password": PASSWORD,
    }
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "test CA"),),)
    relaxed = Settings.from_env(sasl_ssl(ca_file, password_file, MIC_KAFKA_SSL_CHECK_HOSTNAME="false"))
    assert relaxed.kafka_security.ssl_context().check_hostname is False  # type: ignore[union-attr]


def test_faust_gets_credentials_that_become_the_same_aiokafka_options(
    ca_file: Path, password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from mic_pipeline import kafka_clients

    monkeypatch.setattr(kafka_clients, "verify_access", lambda settings: None)  # no broker here
    settings = Settings.from_env({**sasl_ssl(ca_file, password_file), "MIC_KAFKA_BOOTSTRAP": "k:9093"})
    app_options = kafka_clients.faust_app_options(settings)
    assert app_options["broker"] == "kafka://k:9093"
    credentials = app_options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials) and PASSWORD not in repr(credentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("pipeline", PASSWORD)
    assert auth["ssl_context"].get_ca_certs()[0]["subject"] == ((("commonName", "test CA"),),)
    plain = kafka_clients.faust_app_options(Settings())
    assert plain["broker_credentials"] is None
    assert credentials_to_aiokafka_auth(plain["broker_credentials"]) == {"security_protocol": "PLAINTEXT"}


def test_a_caller_cannot_override_the_security_options() -> None:
    for builder in (kafka_python_options, aiokafka_options):
        for option in ("security_protocol", "ssl_context", "sasl_plain_password"):
            with pytest.raises(ValueError, match="security options come from the settings"):
                builder(Settings(), **{option: None})


# -- every client of the source tree gets its options from kafka_clients ------------------------------

CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "KafkaClient", "AIOKafkaProducer",
           "AIOKafkaConsumer", "AIOKafkaClient", "AIOKafkaAdminClient", "App"}  # fmt: skip
BUILDERS = {"kafka_python_options", "aiokafka_options", "faust_app_options"}
PASS_THROUGH = {("streams/recovery.py", "_consumer"), ("streams/replica.py", "follow_topics")}
"""Functions whose client takes `**options` from their caller; every call of them is checked."""
OPTION_TAKERS = {"changelog_ends": 3, "load_stores": 3, "follow_topics": None}
"""Functions that pass `options` on to a pass-through client: position of the argument (None: keyword)."""
ALLOWED: dict[str, str] = {}
FAUST_SECURITY = {"broker", "broker_credentials", "ssl_context"}
SCANNED = ("mic_pipeline", "producers", "sinks", "streams", "schemas", "bench")


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):  # faust_compat.batch_app_class()(...): a faust App subclass
        return "App" if _name(node.func) == "batch_app_class" else ""
    return ""


def _built_by_us(value: ast.expr, assigned: dict[str, ast.expr]) -> bool:
    if isinstance(value, ast.Name) and value.id in assigned:
        value = assigned[value.id]
    return isinstance(value, ast.Call) and _name(value.func) in BUILDERS


def client_problems(source: str, path: str) -> tuple[int, list[str]]:
    """(clients found, one line per client or option-taker call not built with kafka_clients)."""
    tree = ast.parse(source)
    scope_of: dict[ast.AST, ast.AST] = {}
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in [tree, *functions]:
        for node in ast.walk(scope):
            scope_of[node] = scope  # inner functions come later in the walk: the nearest scope wins
    assignments: dict[ast.AST, dict[str, ast.expr]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assignments.setdefault(scope_of[node], {})[target.id] = node.value
    problems: list[str] = []
    found = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        scope = scope_of[node]
        assigned = assignments.get(scope, {})
        where, called = f"{path}:{node.lineno}", _name(node.func)
        if called in OPTION_TAKERS:
            position = OPTION_TAKERS[called]
            given = [k.value for k in node.keywords if k.arg == "options"]
            if position is not None and len(node.args) > position:
                given.append(node.args[position])
            if not given or not _built_by_us(given[0], assigned):
                problems.append(f"{where}: {called}(...) without options=aiokafka_options(...)")
        if called not in CLIENTS:
            continue
        found += 1
        spread = [k.value for k in node.keywords if k.arg is None]
        explicit = {k.arg for k in node.keywords if k.arg} & (SECURITY_OPTIONS | FAUST_SECURITY)
        if explicit:
            problems.append(f"{where}: {called} sets {sorted(explicit)} itself")
        passes_through = (path, getattr(scope, "name", "")) in PASS_THROUGH
        if passes_through and any(isinstance(v, ast.Name) and v.id == "options" for v in spread):
            continue
        if not any(_built_by_us(value, assigned) for value in spread):
            problems.append(f"{where}: {called}(...) without **kafka_clients options")
    return found, problems


def test_every_kafka_client_in_the_source_tree_takes_its_options_from_kafka_clients() -> None:
    total, problems = 0, []
    for package in SCANNED:
        for file in sorted((ROOT / package).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            found, mine = client_problems(file.read_text(), path)
            total += found
            if path in ALLOWED:
                assert mine, f"{path} no longer bypasses kafka_clients: drop it from ALLOWED"
                continue
            problems += mine
    assert not problems, "\n".join(problems)
    assert total >= 15, f"only {total} client constructions found: is the scan still looking?"


@pytest.mark.parametrize(
    "snippet",
    [
        "def f(s):\n    return KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks='all')\n",
        "def f(s):\n    return KafkaConsumer(**kafka_python_options(s), security_protocol='PLAINTEXT')\n",
        "def f(s):\n    import faust\n    return faust.App('x', broker='kafka://k:9092')\n",
        "def f(s):\n    return batch_app_class()('id', broker='kafka://k')\n",
        "async def f(s):\n    return AIOKafkaConsumer(bootstrap_servers='k', **dict(a=1))\n",
        "async def f(s):\n    return await load_stores('k', 't', [1])\n",
        "async def f(s):\n    return await follow_topics('k', {}, stopped=1, ready=2, options={})\n",
    ],
)
def test_the_scan_catches_a_client_without_the_options(snippet: str) -> None:
    _, problems = client_problems(snippet, "new.py")
    assert problems, snippet


def test_the_scan_accepts_the_ways_the_tree_builds_clients() -> None:
    good = (
        "def f(s):\n    return KafkaProducer(bootstrap_servers=s.b, **kafka_python_options(s, acks='all'))\n"
        "def g(s):\n    options = aiokafka_options(s)\n    return load_stores('k', 't', [1], options)\n"
        "def h(s):\n    return faust.App('x', **faust_app_options(s))\n"
    )
    assert client_problems(good, "ok.py") == (2, [])


# -- TLS material ------------------------------------------------------------------------------------


def test_certificates_name_their_hosts_and_files_are_private(tmp_path: Path, authority: KeyPair) -> None:
    from cryptography import x509

    pair = issue(authority, "mic-kafka-broker", ["127.0.0.1", "localhost"])
    names = pair.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert subject_principal(pair) == "User:CN=mic-kafka-broker"
    assert pair.certificate.issuer == authority.certificate.subject
    path = tmp_path / "key.pem"
    path.write_text("old, readable")
    path.chmod(0o644)
    write_private(path, pair.key_pem)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == pair.key_pem


@pytest.fixture
def tls_server(tmp_path: Path, authority: KeyPair) -> Iterator[int]:
    """A TLS server on loopback whose certificate (signed by `authority`) is for other.example only."""
    pair = issue(authority, "other", ["other.example"])
    chain = tmp_path / "server.pem"
    write_private(chain, pair.key_pem + pair.cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_a_certificate_for_another_host_is_named_as_such(
    tls_server: int, ca_file: Path, password_file: Path
) -> None:
    from mic_pipeline.kafka_access import diagnose

    environ = sasl_ssl(ca_file, password_file, MIC_KAFKA_BOOTSTRAP=f"127.0.0.1:{tls_server}")
    found = diagnose(Settings.from_env(environ), timeout_s=5)
    assert found is not None and found.variable == "MIC_KAFKA_BOOTSTRAP"
    assert str(found).startswith(
        f"MIC_KAFKA_BOOTSTRAP='127.0.0.1:{tls_server}': "
        f"the certificate of the broker at 127.0.0.1:{tls_server} is not for 127.0.0.1 ("
    )
    assert str(found).endswith("connect by a name it holds, or set MIC_KAFKA_SSL_CHECK_HOSTNAME=false")
