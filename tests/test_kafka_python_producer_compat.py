"""`mic_pipeline.kafka_python_compat`, producer side: after an outage kafka-python 3.0.12's idempotent
producer asks for a new producer id (instead of never producing again), and one it declared dead is
recognised so that the publisher and the sinks replace it.

On kafka-python's own `TransactionManager`, no broker: the broker-level proof is
`tests/test_faults_outage.py` (two of three brokers down under the running pipeline and producer).
"""

from __future__ import annotations

from types import SimpleNamespace

import kafka
from kafka.errors import KafkaError
from kafka.producer.transaction_manager import ProducerIdAndEpoch, TransactionManager, TransactionState

from mic_pipeline.kafka_python_compat import heal_producer_id_reset, producer_heal_needed, producer_is_dead


def _ready_producer() -> SimpleNamespace:
    """A producer holding an idempotent transaction manager that got its producer id."""
    manager = TransactionManager(api_version=(4, 1))
    manager.init_producer_id()
    manager._pending_requests.clear()  # the InitProducerId request, as if answered:
    manager.set_producer_id_and_epoch(ProducerIdAndEpoch(1007, 0))
    manager._transition_to(TransactionState.READY)
    return SimpleNamespace(_transaction_manager=manager)


def test_the_workaround_is_on_for_the_installed_kafka_python_and_gated_by_version() -> None:
    """Upgrading kafka-python fails this test until someone checks whether the defect is still there."""
    assert producer_heal_needed(kafka.__version__), f"kafka-python {kafka.__version__}: re-check the defect"
    assert producer_heal_needed("3.0.12") and not producer_heal_needed("3.1.0")
    assert not heal_producer_id_reset(_ready_producer(), version="3.1.0")


def test_without_the_workaround_a_reset_producer_never_asks_for_a_new_id() -> None:
    """The defect itself, on kafka-python's own code: after `reset_producer_id` (a sent batch that
    expired or ran out of retries) the manager stays READY with no id, and `init_producer_id` --
    what the sender calls on every loop while it has no id -- does nothing."""
    manager = _ready_producer()._transaction_manager
    manager.reset_producer_id()
    manager.init_producer_id()
    assert not manager.has_producer_id() and manager._current_state is TransactionState.READY
    assert manager.next_request_handler(False) is None, "it asked after all: the defect is gone"


def test_with_the_workaround_the_next_sender_loop_asks_for_a_new_id() -> None:
    producer = _ready_producer()
    assert heal_producer_id_reset(producer)
    manager = producer._transaction_manager
    manager.reset_producer_id()
    assert manager._current_state is TransactionState.UNINITIALIZED
    manager.init_producer_id()  # what the sender's next loop does
    handler = manager.next_request_handler(False)
    assert handler is not None and type(handler).__name__ == "InitProducerIdHandler"
    assert manager._current_state is TransactionState.INITIALIZING


def test_a_transactional_or_non_idempotent_producer_is_left_alone() -> None:
    assert not heal_producer_id_reset(SimpleNamespace(_transaction_manager=None))
    transactional = SimpleNamespace(_transaction_manager=TransactionManager(transactional_id="t"))
    assert not heal_producer_id_reset(transactional)


def test_a_producer_in_the_fatal_state_is_dead() -> None:
    """kafka-python takes a timed-out InitProducerId for a fatal error (after the workaround asked
    during an outage): the producer fails every record from then on and must be replaced."""
    producer = _ready_producer()
    assert not producer_is_dead(producer)
    producer._transaction_manager._transition_to(
        TransactionState.FATAL_ERROR, error=KafkaError("Could not execute transactional request")
    )
    assert producer_is_dead(producer)
    assert not producer_is_dead(SimpleNamespace(_transaction_manager=None))
