"""Loading the demo district into the database: idempotent, overrides merged down; where
each node was declared (file:line) stored with it, by CloudService when it has the file,
and the migration that adds it runs up and down on both stores."""

from __future__ import annotations

from sqlalchemy import func, select

from cloud import auth, escalation
from cloud.db import models as m
from cloud.db import transaction
from cloud.site_sync import sync_site
from microbrain.broker.mosquitto_conf import check_password
from microbrain.protocol import Severity
from microbrain.site import load_site


def test_demo_site_loads_twice_without_duplicates(factory, demo_site_path):
    site = load_site(demo_site_path)
    with transaction(factory) as s:
        first = sync_site(s, site)
    with transaction(factory) as s:
        again = sync_site(s, site)
        assert first == again and first.gateways == len(list(site.gateways()))
        assert (
            s.scalar(
                select(func.count())
                .select_from(m.Compound)
                .where(m.Compound.community.in_(["xiyuan", "dongcheng"]))
            )
            == first.compounds
        )
        # dongcheng overrides the building level's critical deadline (3 minutes)
        compound = next(k.id for c in site.communities if c.id == "dongcheng" for k in c.compounds)
        policy = escalation.policy_for(s, "dongcheng", compound)
        assert policy.deadline("building", Severity.CRITICAL) == 180
        assert policy.deadline("compound", Severity.CRITICAL) == site.escalation.compound.critical
        assert policy.whistle["elevator_fault"] == "elevator"


def test_gateway_credentials_export_for_mosquitto(factory, gw):
    from datetime import UTC, datetime

    with transaction(factory) as s:
        auth.set_gateway_password(s, gw.gateway, "s3cret-pass", now=datetime.now(UTC))
    with factory() as s:
        passwd, acl = auth.broker_files(s)
    line = next(l for l in passwd.splitlines() if l.startswith(f"{gw.gateway}:"))
    assert "s3cret" not in passwd and check_password(line.split(":", 1)[1], "s3cret-pass")
    assert f"topic write mb/v1/{gw.community}/{gw.compound}/{gw.gateway}/event" in acl


def test_exported_password_file_works_in_a_real_mosquitto(factory, gw, tmp_path):
    from datetime import UTC, datetime

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.utils.services import private_mosquitto

    with transaction(factory) as s:
        auth.set_gateway_password(s, gw.gateway, "right-password", now=datetime.now(UTC))
    with factory() as s:
        passwd, _ = auth.broker_files(s)
    pw_file = tmp_path / "passwd"
    pw_file.write_text(passwd)
    with private_mosquitto(
        tmp_path / "b", extra=f"allow_anonymous false\npassword_file {pw_file}\n"
    ) as broker:

        def connect(password: str) -> int:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            c.username_pw_set(gw.gateway, password)
            try:
                return int(c.connect("127.0.0.1", broker.port) == 0 and _wait_connack(c))
            finally:
                c.disconnect()

        assert connect("right-password") == 1
        assert connect("wrong-password") == 0


def _wait_connack(c) -> bool:
    import time

    result: list[bool] = []
    c.on_connect = lambda *a: result.append(not a[3].is_failure)
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        c.loop(0.1)
    return bool(result and result[0])


def test_gateway_passwords_are_imported_from_the_environment(factory, demo_site_path):
    from cloud.site_sync import import_gateway_passwords

    site = load_site(demo_site_path)
    env = {"MB_GW_XIYUAN_1_PASSWORD": "first-secret"}
    with transaction(factory) as s:
        sync_site(s, site)
        assert import_gateway_passwords(s, site, env) == 1
    with transaction(factory) as s:
        assert import_gateway_passwords(s, site, env) == 0  # unchanged: not rehashed
        assert auth.authenticate_gateway(s, "gw-xiyuan-1", "first-secret") is not None
        assert auth.authenticate_gateway(s, "gw-xiyuan-1", "wrong") is None
        assert auth.authenticate_gateway(s, "gw-xiyuan-2", "") is None  # its variable is unset
    with transaction(factory) as s:
        assert import_gateway_passwords(s, site, {"MB_GW_XIYUAN_1_PASSWORD": "rotated"}) == 1
        assert auth.authenticate_gateway(s, "gw-xiyuan-1", "rotated") is not None


def test_sync_stores_where_each_node_was_declared(factory, demo_site_path):
    from microbrain.site.loader import site_sources

    site = load_site(demo_site_path)
    sources = site_sources(demo_site_path)
    # one transaction: the database is shared, another test may sync without sources
    with transaction(factory) as s:
        sync_site(s, site, sources=sources)
        s.flush()
        s.expire_all()
        config = s.scalars(select(m.SiteConfig)).one()
        assert config.sources == sources
        # the line of `- id: xiyuan` under communities:, read off the file itself
        lines = demo_site_path.read_text(encoding="utf-8").splitlines()
        line = lines.index("  - id: xiyuan") + 1
        assert config.sources["community:xiyuan"] == f"{demo_site_path}:{line}"
        sync_site(s, site)  # a load without its file records none, rather than stale lines
        s.flush()
        s.expire_all()
        assert s.scalars(select(m.SiteConfig)).one().sources == {}


def test_the_service_records_the_sources_of_the_file_it_was_given(
    cloud_url, demo_site_path, monkeypatch
):
    import uuid

    from pydantic import SecretStr

    from cloud.app import CloudService
    from cloud.settings import Settings

    monkeypatch.chdir(demo_site_path.parents[2])
    relative = "configs/demo/site.yaml"
    settings = Settings(
        database_url=cloud_url,
        environment="test",
        admin_password=SecretStr(f"pw-{uuid.uuid4().hex}"),
    )
    service = CloudService(
        settings, site=load_site(relative), site_path=relative, ingest=False, scheduler=False
    )
    try:
        service.prepare()
        with service.factory() as s:
            sources = s.scalars(select(m.SiteConfig)).one().sources
    finally:
        service.engine.dispose()
    # the SQLite file is this test's own; on the shared PostgreSQL another test may sync
    # the site without sources between prepare and this read
    if cloud_url.startswith("sqlite") or sources:
        assert sources["gateway:gw-xiyuan-1"].startswith(f"{relative}:")
        assert sources["district"] == f"{relative}:6"


def _migration_round_trip(url: str) -> None:
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import inspect, text

    from cloud.db import make_engine
    from cloud.db.migrate import alembic_config

    cfg = alembic_config(url)
    command.upgrade(cfg, "0006")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO site_config (id, district, name, timezone, escalation, loaded_at)"
                    " VALUES (1, 'd', 'D', 'Asia/Shanghai', '{}', :at)"
                ),
                {"at": datetime(2026, 12, 1, tzinfo=UTC)},
            )
        command.upgrade(cfg, "0007")
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT sources FROM site_config")).scalar_one()
        assert stored in ({}, "{}")  # an older row: none recorded
        command.downgrade(cfg, "0006")
        assert "sources" not in {c["name"] for c in inspect(engine).get_columns("site_config")}
        command.upgrade(cfg, "head")
        assert "sources" in {c["name"] for c in inspect(engine).get_columns("site_config")}
    finally:
        engine.dispose()


def test_the_sources_migration_runs_up_and_down_on_sqlite(tmp_path):
    _migration_round_trip(f"sqlite:///{tmp_path / 'm.db'}")


def test_the_sources_migration_runs_up_and_down_on_postgres():
    from tests.utils.services import postgres_database

    with postgres_database() as url:
        _migration_round_trip(url)
