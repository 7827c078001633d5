"""Manifest serials from several cloud processes on one database: never shared, and
increasing in each process (the database allocates them)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cloud.db import models as m
from cloud.db import transaction
from cloud.model_registry import keys, manifests
from microbrain.signing import parse_public_key, verify_manifest

ROOT = Path(__file__).resolve().parents[3]
SIGNER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from cloud.db import make_engine, session_factory, transaction
from cloud.db import models as m
from cloud.model_registry import keys, manifests
url, key_path, model_id, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
factory = session_factory(make_engine(url))
key = keys.signing_key(key_path)
for _ in range(n):
    with transaction(factory) as s:
        model = s.get(m.ModelVersion, model_id)
        row = manifests.issue(s, key, model, actor="p", now=datetime.now(UTC))
        print(row.serial, flush=True)
"""


def test_serials_are_unique_and_increasing_across_processes(factory, cloud_url, tmp_path, request):
    key_path = tmp_path / "model-signing.key"
    with transaction(factory) as s:
        model = m.ModelVersion(
            name=f"serials-{request.node.name[-12:]}-{tmp_path.name}"[:100],
            version="1",
            sha256="0" * 64,
            bytes=1,
            card={"classes": ["person"], "input_size": 640},
            uploaded_by="t",
            created_at=datetime.now(UTC),
        )
        s.add(model)
        s.flush()
        model_id = model.id
    keys.signing_key(key_path)  # made once, before the processes share it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SIGNER, cloud_url, str(key_path), str(model_id), "15"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    per_process = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        per_process.append([int(line) for line in out.split()])
    every = [serial for serials in per_process for serial in serials]
    assert len(every) == 45 and len(set(every)) == 45
    for serials in per_process:
        assert serials == sorted(serials)
    public = parse_public_key(keys.public_text(key_path))
    with factory() as s:
        for serial in every:
            row = s.get(m.ModelManifestRow, serial)
            assert row is not None
            assert verify_manifest(public, row.text, row.signature).serial == serial
    assert manifests.file_url(model_id) == f"/api/models/{model_id}/file"
