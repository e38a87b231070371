"""Every Kafka client's security options, from `Settings.kafka_security`, in one place.

One function per client library; every client of the pipeline is built with one of them
(`tests/test_kafka_security.py` scans the source tree and fails on a client that is not):

- `kafka_python_options(settings, **options)`: `KafkaProducer`, `KafkaConsumer`,
  `KafkaAdminClient` (publisher, simulator, sinks, admin and operator commands);
- `aiokafka_options(settings, **options)`: `AIOKafkaProducer`, `AIOKafkaConsumer` (the stream
  worker's producer, state recovery and replica readers);
- `faust_app_options(settings)`: `broker=` and `broker_credentials=` of a faust `App` (faust passes
  the credentials to every aiokafka client it makes: consumer, producer, topic creation).

The bootstrap servers are the caller's (`bootstrap_servers=settings.kafka_bootstrap`, as before);
`options` are the client's own tuning, returned with the security options added. A caller that
passes a security option itself gets `ValueError`: nothing may bypass the settings.

TLS is one `ssl.SSLContext` for both libraries (`KafkaSecurity.ssl_context`): TLS 1.2 or later, the
CA file (or the system's CAs), hostname verification unless `MIC_KAFKA_SSL_CHECK_HOSTNAME=false`,
and the client certificate and key for mutual TLS.

Before the first client of a process, the options functions check, in bounded time, that the
broker accepts these settings (`kafka_access.verify_access`: a refused login or TLS handshake, a
protocol mismatch); a consumer that names the topics it `reads` (and its `group_id`) has them
checked too (`verify_reads`), since kafka-python only logs a topic it may not read. Both raise
`KafkaAccessError`, one line naming the setting to fix. `explain_kafka_error` / `security_problem`
turn a client's later failure (a missing ACL, a timeout behind which a refused login hides) into
such a line.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mic_pipeline.config import Settings
from mic_pipeline.kafka_access import verify_access
from mic_pipeline.kafka_settings import KafkaSecurity

_TOPIC_AUTHORIZATION_FAILED = 29
SECURITY_OPTIONS = frozenset(
    {
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_oauth_token_provider",
        "sasl_kerberos_service_name",
        "ssl_context",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "ssl_crlfile",
    }
)


def security_options(security: KafkaSecurity) -> dict[str, Any]:
    """The security options of `security`, named as kafka-python and aiokafka both name them (pure:
    no access check)."""
    result: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_sasl:
        result["sasl_mechanism"] = security.sasl_mechanism
        result["sasl_plain_username"] = security.sasl_username
        result["sasl_plain_password"] = security.sasl_password
    context = security.ssl_context()
    if context is not None:
        result["ssl_context"] = context
    return result


def _merged(settings: Settings, options: dict[str, Any], reads: Collection[str] = ()) -> dict[str, Any]:
    given = sorted(SECURITY_OPTIONS & options.keys())
    if given:
        raise ValueError(f"security options come from the settings (MIC_KAFKA_*), not the caller: {given}")
    verify_access(settings)
    if reads:
        verify_reads(settings, reads, options.get("group_id"))
    return {**options, **security_options(settings.kafka_security)}


def kafka_python_options(settings: Settings, *, reads: Collection[str] = (), **options: Any) -> dict[str, Any]:  # noqa: E501
    """`options` plus the security options of a kafka-python client for `settings`; a consumer names
    the topics it will read (`reads`): they and its `group_id` are checked first (`verify_reads`)."""
    return _merged(settings, options, reads)


def aiokafka_options(settings: Settings, *, reads: Collection[str] = (), **options: Any) -> dict[str, Any]:
    """`options` plus the security options of an aiokafka client for `settings` (`reads`: as
    `kafka_python_options`)."""
    return _merged(settings, options, reads)


def _readable(topic: dict[str, Any]) -> bool:
    if topic["error_code"] == _TOPIC_AUTHORIZATION_FAILED:
        return False
    allowed = topic.get("authorized_operations")  # None or empty: the broker did not say
    return topic["error_code"] != 0 or not allowed or bool({"READ", "ALL"} & set(allowed))


def verify_reads(settings: Settings, topics: Collection[str], group: str | None = None) -> None:
    """Raise `KafkaAccessError` (naming the user) when the broker does not let this user read every
    one of `topics`, or use the consumer `group`: kafka-python's consumer only logs a topic it may not
    read and waits for its partitions forever. A topic that does not exist is not judged here (the
    consumer waits for it); Kafka answers an unauthorized user alike for a topic that exists and one
    that does not."""
    from kafka import KafkaAdminClient
    from kafka.errors import GroupAuthorizationFailedError

    from mic_pipeline.kafka_access import KafkaAccessError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_python_options(settings))
    try:
        described = admin.describe_topics(sorted(topics))
        denied = sorted(topic["name"] for topic in described if not _readable(topic))
        if group is not None and not denied:
            try:
                admin.describe_groups([group])
            except GroupAuthorizationFailedError:
                denied = [f"consumer group {group}"]
    finally:
        admin.close()
    if denied:
        security = settings.kafka_security
        user = security.sasl_username if security.uses_sasl else ""
        who = f"user {user!r}" if user else "this anonymous client"
        problem = (
            f"{who} may not read {', '.join(denied)} on {settings.kafka_bootstrap} (no ACL allows it): grant "
            "READ (README: ACLs per component) or connect as a user that may"
        )
        raise KafkaAccessError("MIC_KAFKA_SASL_USERNAME", user, problem)


def faust_app_options(settings: Settings) -> dict[str, Any]:
    """`broker` and `broker_credentials` of a faust `App` for `settings` (faust 0.15: credentials
    become aiokafka's options in `faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth`)."""
    import faust

    verify_access(settings)
    security = settings.kafka_security
    credentials: Any = None
    context = security.ssl_context()
    if security.uses_sasl:
        credentials = faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return {"broker": f"kafka://{settings.kafka_bootstrap}", "broker_credentials": credentials}


def explain_kafka_error(error: BaseException, settings: Settings) -> str:
    """One line for a Kafka client's failure: `security_problem`, else the error as the library
    words it (`KafkaTimeoutError: Unable to bootstrap from ...`)."""
    problem = security_problem(error, settings)
    if problem is not None:
        return problem
    name, text = error.__class__.__name__, str(error)
    return text if text.startswith(name) else f"{name}: {text}"


def security_problem(error: BaseException, settings: Settings) -> str | None:
    """The cause and the setting to fix when a Kafka client's failure is a security problem (a
    refused login or TLS handshake, found by `kafka_access.diagnose` behind a timeout or a lost
    connection; an operation no ACL allows), else None."""
    from kafka import errors as kafka_errors

    from mic_pipeline.kafka_access import KafkaAccessError, diagnose

    if isinstance(error, KafkaAccessError):
        return str(error)
    name = error.__class__.__name__
    if isinstance(error, kafka_errors.AuthorizationError) or name.endswith("AuthorizationFailedError"):
        return _not_authorized(error, settings)
    if isinstance(error, kafka_errors.KafkaTimeoutError | kafka_errors.KafkaConnectionError) or name in (
        "KafkaConnectionError",  # aiokafka's own
        "NoBrokersAvailable",
        "SaslAuthenticationFailedError",
        "UnsupportedSaslMechanismError",
    ):
        problem = diagnose(settings)
        if problem is not None:
            return str(problem)
    return None


_WHAT = {
    "TopicAuthorizationFailedError": "topic",
    "GroupAuthorizationFailedError": "consumer group",
    "ClusterAuthorizationFailedError": "cluster operation",
    "TransactionalIdAuthorizationFailedError": "transactional id",
}


def _not_authorized(error: BaseException, settings: Settings) -> str:
    """The missing-ACL line: which user, which resource (as the library names it), what to do."""
    security = settings.kafka_security
    who = f"user {security.sasl_username!r}" if security.uses_sasl else "this client (no SASL login)"
    what = _WHAT.get(error.__class__.__name__, "resource")
    named = error.args[0] if error.args else ""
    names = sorted(map(str, named)) if isinstance(named, set | frozenset | list | tuple) else [str(named)]
    about = f" ({', '.join(names)})" if any(names) else ""
    return (
        f"not authorized: {who} has no ACL allowing this on the {what}{about}: grant it "
        "(README, ACLs per component) or connect as a user that has it (MIC_KAFKA_SASL_USERNAME)"
    )
