"""Two cloud processes' schedulers stepping the same rollouts at the same moment: every
gateway gets its install once (the claim is a guarded UPDATE committed before the
publish), the rollout moves once."""

from __future__ import annotations

import threading

from sqlalchemy import select

from cloud.commands import MqttCommandSender
from cloud.db import make_engine, session_factory
from cloud.db import models as m
from cloud.model_registry import step as rollout_step
from microbrain.protocol import Ack
from tests.cloud.helpers import wait_for
from tests.cloud.model_registry.conftest import Registry
from tests.cloud.model_registry.test_rollouts import _models, inbox, rollout


def test_two_schedulers_send_each_install_once(registry: Registry, cloud_url: str):
    _old, new = _models(registry)
    gateways = [registry.gateway() for _ in range(12)]
    for gw in gateways:
        registry.heartbeat(gw, (registry.name, "1.0.0"))
    engines = [make_engine(cloud_url) for _ in range(2)]
    senders = [MqttCommandSender(registry.settings) for _ in range(2)]
    sent = [0, 0]
    try:
        with inbox(registry, *gateways) as box:
            made = rollout(registry, new, gateways, canary=0)
            barrier = threading.Barrier(2)
            now = registry.clock()

            def process(i: int) -> None:
                factory = session_factory(engines[i])
                barrier.wait()
                for _ in range(3):
                    sent[i] += rollout_step.run_step(factory, senders[i], now, resend_s=60)

            threads = [threading.Thread(target=process, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            # (on PostgreSQL the session's database holds other tests' rollouts too)
            assert sum(sent) >= len(gateways), sent
            # each sender's last message, behind its installs on the same connection
            marker = gateways[0]
            for sender in senders:
                sender.send(marker, Ack(ranges=((1, 1),)))
            wait_for(lambda: sum(box.count(gw) for gw in gateways) == len(gateways))
            wait_for(lambda: box.acks == 2)
            assert {gw.gateway: box.count(gw) for gw in gateways} == {
                gw.gateway: 1 for gw in gateways
            }
        with registry.factory() as s:
            sends = s.scalars(
                select(m.ModelRolloutGateway.sends).where(
                    m.ModelRolloutGateway.rollout_id == made["id"]
                )
            ).all()
        assert sorted(sends) == [1] * len(gateways)
    finally:
        for sender in senders:
            sender.close()
        for engine in engines:
            engine.dispose()
