"""docker-compose.yml checked against the code, since no Docker engine runs here.

- Every pipeline service's `command` (the image's ENTRYPOINT is `mic-pipeline`) parses with the real
  argument parser, `mic_pipeline.cli.build_parser()`.
- Every `MIC_*` variable a service sets is one the code reads. Which variables the code reads is
  observed, not grepped: the environment mapping handed to each configuration reader records the keys
  it is asked for. The readers are the `from_env` functions every process goes through
  (`Settings.from_env`, `StreamSettings.from_env`, `Thresholds.from_env`) and the web page's
  `default_streams_url`; a variable no reader asks for (a typo, a removed setting) fails the test,
  and the service's values must also parse (the readers raise on bad numbers).
- Health checks ask the port the service's command (or environment) configures; services depend on
  the broker, the topics and the database the way they need them; named volumes are declared.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from mic_pipeline.cli import build_parser
from mic_pipeline.config import Settings
from mic_pipeline.ops.verdict import Thresholds
from mic_pipeline.ops.web import default_streams_url
from streams.settings import StreamSettings

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
PIPELINE_SERVICES = ("topics", "streams", "sink-sql", "sink-parquet", "web", "simulator", "report")
LONG_RUNNING = ("streams", "sink-sql", "sink-parquet", "web")


class RecordingEnvironment(dict[str, str]):
    """A process environment that remembers which variables were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def variables_read(environment: dict[str, str]) -> set[str]:
    """The variables the configuration readers ask for, given `environment` (which must parse)."""
    recording = RecordingEnvironment(environment)
    pipeline = Settings.from_env(recording)
    StreamSettings.from_env(pipeline, recording)
    Thresholds.from_env(recording)
    default_streams_url(recording)
    return recording.asked


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe").load(COMPOSE_FILE.read_text())
    return document


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "use the mapping form of `environment`"
    return {str(k): str(v) for k, v in environment.items()}


def test_every_pipeline_service_command_parses_with_the_cli(compose: dict[str, Any]) -> None:
    parser = build_parser()
    services = compose["services"]
    assert set(PIPELINE_SERVICES) <= set(services)
    for name in PIPELINE_SERVICES:
        command = services[name]["command"]
        assert isinstance(command, list) and all(isinstance(a, str) for a in command), name
        try:
            args = parser.parse_args(command)
        except SystemExit as exc:
            pytest.fail(f"service {name}: `mic-pipeline {' '.join(command)}` does not parse ({exc})")
        assert callable(args.handler), name


def test_a_command_the_cli_does_not_know_is_caught() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sink", "sql", "--metric-port", "9101"])


def test_every_mic_variable_is_read_by_the_code(compose: dict[str, Any]) -> None:
    for name in PIPELINE_SERVICES:
        environment = service_environment(compose["services"][name])
        ours = {k for k in environment if k.startswith("MIC_")}
        assert {"MIC_KAFKA_BOOTSTRAP", "MIC_DATABASE_URL"} <= ours, name
        unread = ours - variables_read(environment)
        assert not unread, f"service {name} sets variables no code reads: {sorted(unread)}"


def test_a_misspelt_variable_is_caught() -> None:
    environment = {"MIC_KAFKA_BOOTSTRAP": "kafka:9092", "MIC_KAFKA_BOOTSTRAPS": "kafka:9092"}
    assert "MIC_KAFKA_BOOTSTRAPS" not in variables_read(environment)


def test_the_pipeline_services_share_one_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    shared = {
        name: {k: v for k, v in service_environment(services[name]).items() if k != "MIC_STREAMS_URL"}
        for name in PIPELINE_SERVICES
    }
    assert len({tuple(sorted(env.items())) for env in shared.values()}) == 1, shared
    settings = Settings.from_env(shared["streams"])
    assert settings.kafka_bootstrap == "kafka:9092"
    assert (
        settings.database_url.startswith("postgresql+psycopg://")
        and "@postgres:5432/" in settings.database_url
    )


def configured_port(name: str, service: dict[str, Any]) -> int:
    """The HTTP port a long-running service's command (or environment) configures."""
    args = build_parser().parse_args(service["command"])
    port = {"streams": "web_port", "sink-sql": "metrics_port", "sink-parquet": "metrics_port", "web": "port"}[
        name
    ]
    value = getattr(args, port)
    if value is None and name == "streams":
        return StreamSettings.from_env(Settings(), service_environment(service)).web_port
    assert isinstance(value, int), (name, value)
    return value


def test_health_checks_call_each_process_health_endpoint(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        service = services[name]
        test = " ".join(service["healthcheck"]["test"])
        match = re.search(r"http://127\.0\.0\.1:(\d+)(/health[a-z/]*)", test)
        assert match, f"{name}: the health check does not call a /health endpoint: {test}"
        assert int(match.group(1)) == configured_port(name, service), name
        assert service.get("restart") == "unless-stopped", name
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["postgres"]


def test_dependencies_volumes_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("streams", "sink-sql", "sink-parquet", "web"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully", name
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["sink-sql"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["simulator"]["depends_on"]["streams"]["condition"] == "service_healthy"
    declared = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in declared, f"{name}: volume {source} is not declared"
    for name in ("streams", "sink-sql", "sink-parquet", "web"):
        assert any(v.endswith(":/data") for v in services[name]["volumes"]), name


# -- the secured profile ---------------------------------------------------------------------------

SECURED_SERVICES = (
    "kafka-secrets", "kafka-secured", "kafka-acls-secured", "topics-secured",
    "streams-secured", "sink-sql-secured", "sink-parquet-secured", "simulator-secured",
)  # fmt: skip
SECURED_USERS = {"kafka-acls-secured": "admin", "topics-secured": "pipeline", "streams-secured": "pipeline",
                 "sink-sql-secured": "pipeline", "sink-parquet-secured": "pipeline",
                 "simulator-secured": "producer"}  # fmt: skip
"""Which user each secured component logs in as: the least that lets it do its job."""


@pytest.fixture(scope="module")
def provisioned(compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the kafka-secrets service's own command writes, run here into a temporary directory."""
    command = compose["services"]["kafka-secrets"]["command"]
    args = build_parser().parse_args(command)
    directory = tmp_path_factory.mktemp("secrets")
    args.dir, args.broker_uid, args.client_uid = directory, None, None  # chown needs root: not here
    assert args.handler(args) == 0
    return directory


def on_this_machine(value: str, secrets: Path) -> str:
    return value.replace("/secrets/", f"{secrets}/")


def test_the_secured_profile_leaves_the_default_stack_alone(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SECURED_SERVICES:
        assert services[name].get("profiles") == ["secured"], name
    for name, service in services.items():
        if name not in SECURED_SERVICES:
            assert "secured" not in service.get("profiles", []), name
            assert not any("secrets" in v for v in service.get("volumes", [])), name


def test_secured_commands_parse_and_components_log_in_as_their_own_user(
    compose: dict[str, Any], provisioned: Path
) -> None:
    parser = build_parser()
    services = compose["services"]
    for name in (*SECURED_USERS, "kafka-secrets"):
        assert callable(parser.parse_args(services[name]["command"]).handler), name
    for name, user in SECURED_USERS.items():
        configured = service_environment(services[name])
        environment = {k: on_this_machine(v, provisioned) for k, v in configured.items()}
        unread = {k for k in environment if k.startswith("MIC_")} - variables_read(environment)
        assert not unread, f"service {name} sets variables no code reads: {sorted(unread)}"
        security = Settings.from_env(environment).kafka_security
        assert (security.protocol, security.sasl_mechanism, security.sasl_username) == (
            "SASL_SSL", "SCRAM-SHA-512", user), name  # fmt: skip
        assert security.sasl_password == (provisioned / f"{user}.password").read_text().strip(), name
        assert security.ssl_cafile == provisioned / "ca.pem" and security.ssl_check_hostname, name
        assert Settings.from_env(environment).kafka_bootstrap == "kafka-secured:9092", name


def test_the_secured_broker_is_configured_by_what_kafka_secrets_writes(
    compose: dict[str, Any], provisioned: Path
) -> None:
    from mic_pipeline.infra.kafka_secure import BROKER_USER, USERS

    services = compose["services"]
    broker = services["kafka-secured"]
    assert broker["image"] == services["kafka"]["image"] and broker["hostname"] == "kafka-secured"
    script = broker["command"][0]
    assert f"for user in {' '.join((*USERS, BROKER_USER))}; do" in script  # every user gets SCRAM credentials
    assert "java -Xmx256m @/tmp/format.args" in script and "rm -f /tmp/format.args" in script
    referenced = set(re.findall(r"/secrets/[\w./-]+", str(services)))
    referenced = {r for r in referenced if "$" not in r}
    referenced |= {f"/secrets/{user}.password" for user in (*USERS, BROKER_USER)}
    for path in sorted(referenced):
        assert (provisioned / path.removeprefix("/secrets/")).is_file(), path
    properties = (provisioned / "server.properties").read_text()
    assert "advertised.listeners=SASL_SSL://kafka-secured:9092,HOST://127.0.0.1:9095" in properties
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in properties
    assert f"ssl.keystore.location={provisioned}/broker.pem" in properties
    assert "127.0.0.1:9095:9095" in broker["ports"]
    assert "--command-config /secrets/admin.client.properties" in " ".join(broker["healthcheck"]["test"])


def test_the_secured_services_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    done, healthy = "service_completed_successfully", "service_healthy"
    order = {
        "kafka-secured": ("kafka-secrets", done),
        "kafka-acls-secured": ("kafka-secured", healthy),
        "topics-secured": ("kafka-acls-secured", done),
        "streams-secured": ("topics-secured", done),
        "sink-sql-secured": ("topics-secured", done),
        "sink-parquet-secured": ("topics-secured", done),
        "simulator-secured": ("streams-secured", healthy),
    }
    for name, (before, condition) in order.items():
        assert services[name]["depends_on"][before]["condition"] == condition, name
    for name in ("streams-secured", "sink-sql-secured", "sink-parquet-secured"):
        volumes = services[name]["volumes"]
        assert any(v.endswith(":/data") and v.startswith("pipeline-secured-data") for v in volumes), name
        assert "kafka-secrets:/secrets:ro" in services[name]["volumes"], name
        plain = services[name.removesuffix("-secured")]
        assert services[name]["command"] == plain["command"], name
        assert services[name]["healthcheck"] == plain["healthcheck"], name
