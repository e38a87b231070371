"""The pipeline against a secured broker: SASL_SSL, SCRAM-SHA-512, StandardAuthorizer with ACLs.

One broker for the module, started the way `mic-pipeline kafka start --secure` starts it (the
project's infra code, a free port pair, a temporary state directory), stopped at the end. Each test
grants the users their ACLs on its own topic prefix (`kafka_secure.pipeline_acl_rules`), as
`mic-pipeline kafka acls --prefix` does.

- every refusal -- wrong password, unknown user, CA mismatch, plaintext client on the TLS port, a
  producer writing `mic.deadletter`, the analyst reading an input topic -- is one line naming the
  cause and the setting, in bounded time, no traceback, and nothing written where it was refused;
- `status` shows an authorization failure as FAILING with its reason;
- the quick demo path (simulate as `producer` -> streams and both sinks as `pipeline`) reconciles,
  and no password appears in any log line, output, report, dead letter or status document.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mic_pipeline.config import Settings
from mic_pipeline.infra.kafka_broker import BrokerError, BrokerPaths, start_broker, stop_broker
from mic_pipeline.infra.kafka_config import BrokerConfig
from mic_pipeline.infra.kafka_secure import ADMIN_USER, BROKER_USER, USERS, apply_acls, pipeline_acl_rules
from mic_pipeline.infra.kafka_tls import new_authority
from mic_pipeline.infra.topics import create_topics
from mic_pipeline.kafka_access import KafkaAccessError, diagnose
from schemas.topics import DEADLETTER_TOPIC, ENRICHED_TOPICS, INPUT_TOPICS

pytestmark = [pytest.mark.kafka]
REFUSAL_DEADLINE_S = 20.0
"""A refused command ends within this (a Python start-up with kafka-python imported is ~2 s here)."""


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port < 65535:
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair on loopback")


@dataclass
class SecuredBroker:
    """The module's secured broker and how to reach it as each user."""

    paths: BrokerPaths
    bootstrap: str

    def env(self, user: str, **overrides: str) -> dict[str, str]:
        """A process environment connecting as `user`: the broker's `<user>.env` file."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("MIC_")}
        lines = self.paths.secrets.env_file(user).read_text().splitlines()
        variables = dict(line.split("=", 1) for line in lines if line)
        return {**base, **variables, **overrides}

    def settings(self, user: str, prefix: str = "", tmp: Path | None = None) -> Settings:
        settings = Settings.from_env(self.env(user, MIC_TOPIC_PREFIX=prefix, MIC_PARTITIONS="3"))
        if tmp is not None:
            settings = dataclasses.replace(settings, warehouse_dir=tmp / "warehouse", state_dir=tmp / "state",
                                           database_url="")  # fmt: skip
        return settings

    def passwords(self) -> list[str]:
        return [str(self.paths.secrets.password(user)) for user in (*USERS, BROKER_USER)]

    def grant(self, prefix: str) -> None:
        """The users' ACLs on the topics of `prefix`, and those topics (as admin)."""
        admin = self.settings(ADMIN_USER, prefix)
        apply_acls(admin, pipeline_acl_rules(prefix))
        create_topics(admin)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    from mic_pipeline.infra.kafka_dist import KafkaFetchError, fetch_kafka

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        message = "Java is needed for the secured broker"
        if os.environ.get("MIC_REQUIRE_INFRA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        dist = fetch_kafka(Settings().cache_dir if "MIC_CACHE_DIR" not in os.environ
                           else Path(os.environ["MIC_CACHE_DIR"]))  # fmt: skip
    except KafkaFetchError as error:
        if os.environ.get("MIC_REQUIRE_INFRA") == "1":
            pytest.fail(f"no Kafka jars: {error}")
        pytest.skip(f"no Kafka jars: {error}")
    paths = BrokerPaths.in_state_dir(tmp_path_factory.mktemp("secured") / "state")
    config = BrokerConfig(port=_free_port_pair(), secure=True)
    try:
        start_broker(dist, paths, config, timeout_s=180)
    except BrokerError as error:
        pytest.fail(f"the secured broker did not start: {error}")
    try:
        yield SecuredBroker(paths, config.bootstrap)
    finally:
        stop_broker(paths)


@pytest.fixture
def prefix(secured: SecuredBroker, topic_prefix: str) -> str:
    """This test's topic prefix, with the users' ACLs and the pipeline's topics."""
    secured.grant(topic_prefix)
    return topic_prefix


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float


def mic(env: dict[str, str], *arguments: str, cwd: Path) -> Run:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mic_pipeline.cli", *arguments],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


INFO_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ")
"""A service's own INFO log line (the sinks log at INFO; alembic announces its plugins on import)."""


def refused_line(run: Run, secured: SecuredBroker) -> str:
    """The one line a refused command printed besides INFO log lines (checked: bounded time, no
    traceback, no password)."""
    lines = [line for line in run.stderr.strip().splitlines() if not INFO_LOG_LINE.match(line)]
    assert run.code in (2, 3) and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.seconds < REFUSAL_DEADLINE_S, f"took {run.seconds:.1f} s"
    for password in secured.passwords():
        assert password not in run.stdout + run.stderr
    return lines[0]


def test_the_secured_broker_keeps_its_secrets_private(secured: SecuredBroker) -> None:
    secrets = secured.paths.secrets
    assert stat.S_IMODE(secrets.root.stat().st_mode) == 0o700
    private = [secrets.ca_key, secrets.broker_keystore, secured.paths.properties]
    private += [secrets.password_file(user) for user in (*USERS, BROKER_USER)]
    private += [secrets.env_file(user) for user in USERS]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    env_files = "".join(secrets.env_file(user).read_text() for user in USERS)
    assert "MIC_KAFKA_SASL_PASSWORD_FILE=" in env_files
    for password in secured.passwords():
        assert len(password) >= 24 and password not in env_files
    properties = secured.paths.properties.read_text()
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in properties
    assert f"listeners=SASL_SSL://{secured.bootstrap}," in properties
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in properties


def test_a_wrong_password_or_an_unknown_user_is_one_line(
    secured: SecuredBroker, prefix: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    run = mic(secured.env("producer", MIC_KAFKA_SASL_PASSWORD_FILE=str(wrong), MIC_TOPIC_PREFIX=prefix),
              "simulate", "--rate", "10", "--duration", "1", cwd=tmp_path)  # fmt: skip
    line = refused_line(run, secured)
    assert run.code == 3 and line.startswith("mic-pipeline simulate: error: Kafka at ")
    assert line.endswith(
        f"MIC_KAFKA_SASL_PASSWORD_FILE={str(wrong)!r}: the broker at {secured.bootstrap} refused the "
        "SCRAM-SHA-512 login of user 'producer': wrong password or unknown user "
        "(check MIC_KAFKA_SASL_USERNAME too)"
    )
    run = mic(secured.env("producer", MIC_KAFKA_SASL_USERNAME="mallory"), "topics", "create", cwd=tmp_path)
    assert "refused the SCRAM-SHA-512 login of user 'mallory'" in refused_line(run, secured) and run.code == 2
    direct = secured.env("pipeline", MIC_KAFKA_SASL_PASSWORD="guessed-Secret-1", MIC_WAREHOUSE_DIR=str(tmp_path))  # noqa: E501
    del direct["MIC_KAFKA_SASL_PASSWORD_FILE"]
    for command in (("sink", "sql", "--no-gate"), ("streams",)):
        line = refused_line(mic(direct, *command, cwd=tmp_path), secured)
        assert "MIC_KAFKA_SASL_PASSWORD='***': the broker at" in line, line
        assert "guessed-Secret-1" not in line


def test_a_ca_mismatch_and_a_plaintext_client_are_one_line(
    secured: SecuredBroker, prefix: str, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(new_authority("some other CA").cert_pem)
    run = mic(secured.env("admin", MIC_KAFKA_SSL_CAFILE=str(other_ca)), "topics", "create", cwd=tmp_path)
    line = refused_line(run, secured)
    assert run.code == 2 and line.startswith(
        f"topics create failed on {secured.bootstrap}: MIC_KAFKA_SSL_CAFILE={str(other_ca)!r}: the "
        f"certificate of the broker at {secured.bootstrap} is not signed by a CA in this file (CA mismatch: "
    )
    plain = {k: v for k, v in secured.env("producer").items() if not k.startswith("MIC_KAFKA_")}
    plain |= {"MIC_KAFKA_BOOTSTRAP": secured.bootstrap, "MIC_TOPIC_PREFIX": prefix}
    line = refused_line(mic(plain, "simulate", "--rate", "10", "--duration", "1", cwd=tmp_path), secured)
    assert line.endswith(
        f"MIC_KAFKA_SECURITY_PROTOCOL='PLAINTEXT': the listener at {secured.bootstrap} speaks TLS: "
        "set SSL or SASL_SSL, with MIC_KAFKA_SSL_CAFILE"
    )
    status = mic(plain, "status", "--json", cwd=tmp_path)
    document = json.loads(status.stdout)
    assert status.code == 2 and document["verdict"] == "FAILING"
    assert document["reasons"][0].startswith("Kafka refuses access: MIC_KAFKA_SECURITY_PROTOCOL='PLAINTEXT'")


def test_a_producer_may_not_write_the_dead_letter_topic(secured: SecuredBroker, prefix: str) -> None:
    from kafka import TopicPartition
    from kafka.protocol.consumer.offsets import OffsetSpec

    from mic_pipeline.infra.topics import admin_client
    from producers.publisher import DeliveryError, EventPublisher

    began = time.monotonic()
    producer = secured.settings("producer", prefix)
    with pytest.raises(DeliveryError) as refused, EventPublisher(producer, timeout_s=10) as p:
        for n in range(5):
            p.publish_raw("mic.orders", f"k{n}".encode(), b"{}")
        p.publish_raw(DEADLETTER_TOPIC, b"k", b"{}")
    assert time.monotonic() - began < REFUSAL_DEADLINE_S
    assert refused.value.failed == 1
    assert str(refused.value) == (
        f"1 record(s) not delivered; first: {prefix}mic.deadletter key=b'k': not authorized: user 'producer' "
        f"has no ACL allowing this on the topic ({prefix}mic.deadletter): grant it (README, ACLs per "
        "component) or connect as a user that has it (MIC_KAFKA_SASL_USERNAME)"
    )
    with admin_client(secured.settings(ADMIN_USER, prefix)) as admin:  # nothing half-written, nothing lost
        ends = {}
        for topic in (f"{prefix}mic.orders", f"{prefix}mic.deadletter"):
            wanted = {TopicPartition(topic, p): OffsetSpec.LATEST for p in range(3)}
            ends[topic] = sum(r.offset for r in admin.list_partition_offsets(wanted).values())
    assert ends == {f"{prefix}mic.orders": 5, f"{prefix}mic.deadletter": 0}


def test_the_analyst_may_not_read_an_input_topic(secured: SecuredBroker, prefix: str, tmp_path: Path) -> None:
    from mic_pipeline.kafka_clients import kafka_python_options

    analyst = secured.settings("analyst", prefix)
    kafka_python_options(analyst, reads=[f"{prefix}{t}" for t in ENRICHED_TOPICS])  # its own: fine
    began = time.monotonic()
    with pytest.raises(KafkaAccessError) as refused:
        kafka_python_options(analyst, reads=[f"{prefix}{INPUT_TOPICS[1]}"], group_id=f"{prefix}analyst-1")
    assert time.monotonic() - began < REFUSAL_DEADLINE_S
    assert str(refused.value) == (
        f"MIC_KAFKA_SASL_USERNAME='analyst': user 'analyst' may not read {prefix}mic.orders on "
        f"{secured.bootstrap} (no ACL allows it): grant READ (README: ACLs per component) or connect as a "
        "user that may"
    )
    env = secured.env("analyst", MIC_TOPIC_PREFIX=prefix, MIC_WAREHOUSE_DIR=str(tmp_path / "w"))
    line = refused_line(mic(env, "sink", "parquet", "--no-gate", "--group-id", f"{prefix}mic-sink-parquet",
                            cwd=tmp_path), secured)  # fmt: skip
    assert line.endswith(  # after the sink's own prefix ("mic-pipeline sink parquet: ...")
        f"MIC_KAFKA_SASL_USERNAME='analyst': user 'analyst' may not read consumer group "
        f"{prefix}mic-sink-parquet on {secured.bootstrap} (no ACL allows it): grant READ "
        "(README: ACLs per component) or connect as a user that may"
    )
    line = refused_line(mic(env, "deadletters", "list", cwd=tmp_path), secured)
    refusal = f"not authorized: user 'analyst' has no ACL allowing this on the topic ({prefix}mic.deadletter)"
    assert line.startswith(f"deadletters list: {refusal}")
    status = mic(env, "status", "--json", cwd=tmp_path)
    document = json.loads(status.stdout)
    assert status.code == 2 and document["verdict"] == "FAILING", status.stdout
    assert document["reasons"][0].startswith(f"Kafka refuses access: {refusal}")


def test_a_rotated_password_replaces_the_old_one(secured: SecuredBroker, tmp_path: Path) -> None:
    old = secured.settings("analyst")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIC_")}
    env |= {"MIC_STATE_DIR": str(secured.paths.root.parent), "MIC_KAFKA_BOOTSTRAP": secured.bootstrap}
    run = mic(env, "kafka", "rotate-password", "analyst", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert str(old.kafka_security.sasl_password) not in run.stdout + run.stderr
    new = secured.settings("analyst")
    assert new.kafka_security.sasl_password != old.kafka_security.sasl_password
    assert diagnose(new) is None
    refused = diagnose(old)
    assert refused is not None and "refused the SCRAM-SHA-512 login of user 'analyst'" in str(refused)


def _text_of(path: Path) -> str:
    """A file's bytes as text (binary files too: a password would show as its ASCII bytes)."""
    return path.read_bytes().decode("utf-8", errors="replace")


@pytest.mark.slow
def test_the_quick_demo_path_reconciles_with_acls_and_no_password_leaks(
    secured: SecuredBroker,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """simulate as `producer`; streams, both sinks and the web page as `pipeline`; drain, measure and
    status as `pipeline`: the demo's own run (`DemoRun`, quick parameters) on the secured broker."""
    import sqlalchemy as sa

    from mic_pipeline.ops import demo_run
    from mic_pipeline.ops.demo import QUICK, DemoPlan, free_port, simulate

    pipeline_env = secured.env("pipeline", MIC_TOPIC_PREFIX=prefix)
    for name in [k for k in os.environ if k.startswith("MIC_")]:
        monkeypatch.delenv(name)
    for name, value in pipeline_env.items():
        if name.startswith("MIC_"):
            monkeypatch.setenv(name, value)  # the children inherit the pipeline user's settings
    producer_env = {k: v for k, v in secured.env("producer").items() if k.startswith("MIC_KAFKA_SASL")}
    simulated: list[str] = []

    def simulate_as_producer(plan: DemoPlan, environment: dict[str, str], log: object) -> None:
        simulated.append(environment["MIC_KAFKA_SASL_USERNAME"])
        simulate(plan, {**environment, **producer_env}, log)  # type: ignore[arg-type]
        simulated.append(producer_env["MIC_KAFKA_SASL_USERNAME"])

    monkeypatch.setattr(demo_run, "simulate", simulate_as_producer)
    plan = DemoPlan(
        directory=tmp_path, rate=QUICK["rate"], duration_s=QUICK["duration"], scale=QUICK["scale"],
        invalid_fraction=0.02, seed=3, member_wait_s=QUICK["member_wait"], timeout_s=120.0,
        web_port=free_port(), keep_running=False,
    )  # fmt: skip
    plan.log_file.parent.mkdir(parents=True)
    settings = secured.settings("pipeline", prefix, tmp=tmp_path)
    run = demo_run.DemoRun(plan, settings)
    try:
        code = run.execute()
        status_env = {**pipeline_env, "MIC_DATABASE_URL": settings.database_url}
        status = mic(status_env, "status", "--json", cwd=tmp_path)
        with urllib.request.urlopen(f"http://127.0.0.1:{plan.web_port}/api/status", timeout=30) as response:
            api_status = response.read().decode()
    finally:
        run.stop()
    output = capsys.readouterr()
    assert simulated == ["pipeline", "producer"]  # the traffic came from the producer user
    assert code == 0, output.out[-3000:] + _text_of(plan.log_file)[-3000:]
    assert "RECONCILED: " in output.out and "NOT RECONCILED" not in output.out
    assert json.loads(api_status)["verdict"] in ("OK", "DEGRADED") and status.code in (0, 1), status.stdout
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            dead_letters = [str(row) for row in connection.execute(sa.text("SELECT * FROM dead_letters"))]
    finally:
        engine.dispose()
    assert dead_letters
    captured = [output.out, output.err, status.stdout, status.stderr, api_status, *dead_letters]
    files = [plan.log_file, plan.ground_truth, *secured.paths.logs.rglob("*"), secured.paths.console_log]
    files += [p for p in (tmp_path / "report").rglob("*") if p.is_file()]
    files += [p for p in (tmp_path / "warehouse").rglob("*") if p.is_file()]
    assert len(files) > 20 and sum(len(text) for text in captured) > 10_000
    broker_password = str(secured.paths.secrets.password(BROKER_USER))
    assert broker_password in _text_of(secured.paths.properties)  # the search finds what is there
    with capsys.disabled():
        print("\n" + "\n".join(line for line in output.out.splitlines() if "RECONCILED" in line))
    for password in secured.passwords():
        for text in captured:
            assert password not in text
        for path in files:
            assert password not in _text_of(path), path
