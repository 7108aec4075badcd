"""Replies from a real (tiny) exported bundle through the API, against real PostgreSQL: the widget
reply and what is stored with it, handoffs, refused bundles, the OpenAI-compatible endpoint, and
the reply engine's swap."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bundle_runtime.manifest import bundle_checksum
from bundle_runtime.onnx_student import OnnxStudent
from chat_api.batching.loop import Batcher
from chat_api.batching.scheduler import SchedulerConfig
from chat_api.replies import HANDOFF_NOTICE
from chat_api.runtime.serving import ReplyEngine, ServingOptions
from feedback.models import Conversation, Message
from feedback.settings import Settings
from tests.event_loop import run_async
from tests.fixtures.operators import assert_error, auth, make_api_key
from tests.fixtures.serving import VERSION, register, serving
from tests.fixtures.tiny_bundle import TinyBundle
from tests.fixtures.widget import post, start


def test_widget_message_gets_the_students_reply_and_stores_it(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    reference = OnnxStudent(tiny_bundle.path)
    with serving(settings, session_factory) as client:
        cid, headers = start(client)
        response = post(client, cid, headers, "where is my order")
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"message", "reply", "handoff"}
        expected = reference.reply([("customer", "where is my order")])
        assert expected.text == "your order is on its way"
        assert body["message"]["role"] == "customer"
        assert body["message"]["text"] == "where is my order"
        assert body["reply"]["text"] == expected.text and body["handoff"] is False
        assert body["reply"]["model_version"] == VERSION
        assert body["reply"]["intent"] == "track_order"
        stored = db.get(Message, uuid.UUID(body["reply"]["id"]))
        assert stored is not None and stored.role == "assistant" and stored.seq == 2
        assert stored.model_version == VERSION and stored.intent == expected.intent
        assert stored.latency_ms is not None and stored.latency_ms > 0
        assert stored.intent_confidence == pytest.approx(expected.confidence)
        assert stored.reward_score == pytest.approx(expected.reward)
        assert stored.handoff is False

        # The next reply reads the conversation so far: customer, assistant, customer.
        second = post(client, cid, headers, "i want a refund")
        assert second.status_code == 201
        turns = [
            ("customer", "where is my order"),
            ("assistant", expected.text),
            ("customer", "i want a refund"),
        ]
        assert second.json()["reply"]["text"] == reference.reply(turns).text
        assert second.json()["reply"]["seq"] == 4


def test_low_confidence_hands_the_conversation_off(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    with serving(settings, session_factory, handoff_threshold=1.0) as client:
        cid, headers = start(client)
        body = post(client, cid, headers, "where is my order").json()
        assert body["handoff"] is True and body["reply"]["handoff"] is True
        again = post(client, cid, headers, "has my order shipped yet").json()
        # A human has the conversation now: the bot stays quiet.
        assert again["handoff"] is True and again["reply"] is None
    conversation = db.get(Conversation, uuid.UUID(cid))
    assert conversation is not None
    db.refresh(conversation)
    assert conversation.handed_off and conversation.handoff_reason == "low_confidence"
    rows = db.scalars(
        select(Message).where(Message.conversation_id == conversation.id).order_by(Message.seq)
    ).all()
    # One notice only, after the first reply that asked for a human; no bot reply after it.
    assert [m.role for m in rows] == ["customer", "assistant", "system", "customer"]
    assert rows[2].text == HANDOFF_NOTICE and rows[2].handoff


def test_out_of_scope_hands_off_with_its_reason(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    with serving(settings, session_factory) as client:
        cid, headers = start(client)
        on_topic = post(client, cid, headers, "where is my order").json()
        assert on_topic["handoff"] is False
        body = post(client, cid, headers, "tell me a joke").json()
        assert body["handoff"] is True and body["reply"]["intent"] == "out_of_scope"
        read = client.get(f"/v1/widget/conversations/{cid}", headers=headers).json()
    assert read["handed_off"] is True
    assert read["messages"][-1]["role"] == "system"
    conversation = db.get(Conversation, uuid.UUID(cid))
    assert conversation is not None and conversation.handoff_reason == "out_of_scope"


@pytest.mark.parametrize("damage", ["flip_a_byte", "edit_manifest", "delete_folder"])
def test_a_bad_production_bundle_is_not_served(
    tiny_bundle: TinyBundle,
    db: Session,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    bundle = Path(shutil.copytree(tiny_bundle.path, tmp_path / "bundle"))
    register(db, bundle)
    if damage == "flip_a_byte":
        data = bytearray((bundle / "encoder.onnx").read_bytes())
        data[100] ^= 0xFF
        (bundle / "encoder.onnx").write_bytes(bytes(data))
    elif damage == "edit_manifest":  # consistent files, but not the registered bundle
        manifest = bundle / "manifest.json"
        manifest.write_text(
            manifest.read_text().replace('"context_turns": 4', '"context_turns": 9')
        )
    else:
        shutil.rmtree(bundle)
    with caplog.at_level(logging.ERROR), serving(settings, session_factory) as client:
        cid, headers = start(client)
        response = post(client, cid, headers, "where is my order")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_model_deployed"
    assert f"not serving model {VERSION}" in caplog.text


def test_openai_chat_completion_is_answered_by_the_student(
    tiny_bundle: TinyBundle, db: Session, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    register(db, tiny_bundle.path)
    _, key = make_api_key(db)
    expected = OnnxStudent(tiny_bundle.path).reply([("customer", "i want a refund")])
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "i want a refund"},
        ]
    }
    with serving(settings, session_factory) as client:
        response = client.post("/v1/chat/completions", headers=auth(key), json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
        assert data["model"] == VERSION and isinstance(data["created"], int)
        choice = data["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": expected.text}
        assert choice["finish_reason"] == "stop" and choice["index"] == 0
        assert data["usage"] == {
            "prompt_tokens": expected.source_tokens,
            "completion_tokens": len(expected.tokens),
            "total_tokens": expected.source_tokens + len(expected.tokens),
        }
        cut = client.post(
            "/v1/chat/completions", headers=auth(key), json={**body, "max_tokens": 2}
        ).json()
        assert cut["choices"][0]["finish_reason"] == "length"
        assert cut["usage"]["completion_tokens"] == 2
        same = {**body, "model": VERSION}
        assert client.post("/v1/chat/completions", headers=auth(key), json=same).status_code == 200
        other = client.post(
            "/v1/chat/completions", headers=auth(key), json={**body, "model": "gpt-4o"}
        )
        assert VERSION in assert_error(other, 404, "model_not_found")["message"]
        streamed = client.post(
            "/v1/chat/completions", headers=auth(key), json={**body, "stream": True}
        )
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in streamed.text.split("\n\n") if line]
        assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["model"] == VERSION
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == expected.text and len(chunks) > 3
        assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"


def test_bundle_dir_option_serves_without_the_registry(
    tiny_bundle: TinyBundle, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with serving(settings, session_factory, bundle_dir=tiny_bundle.path, precision="fp32") as c:
        cid, headers = start(c)
        response = post(c, cid, headers, "where is my order")
    assert response.status_code == 201
    assert response.json()["reply"]["model_version"] == "tiny-1"  # the manifest's id


def test_engine_swaps_models_and_in_flight_holders_keep_theirs(tiny_bundle: TinyBundle) -> None:
    engine = ReplyEngine(ServingOptions(precision="fp32"))
    assert engine.current is None
    first = engine.load(tiny_bundle.path, "v-a", checksum=bundle_checksum(tiny_bundle.path))
    held = engine.current
    second = engine.load(tiny_bundle.path, "v-b")
    assert engine.current is second and held is first and held.version_id == "v-a"
    turns = [("customer", "where is my order")]
    assert held.student.reply(turns).text == "your order is on its way"
    # New requests go to the model current when they are submitted (through the batcher,
    # as the API's replies do).
    batcher = Batcher(engine, SchedulerConfig())
    batcher.start()
    try:
        version, reply = run_async(batcher.reply(turns))
    finally:
        batcher.stop()
    assert version == "v-b" and reply.text == "your order is on its way"
    with pytest.raises(Exception, match="does not match the checksum"):
        engine.load(tiny_bundle.path, "v-c", checksum="0" * 64)
    assert engine.current is second


def test_serving_never_imports_torch(tiny_bundle: TinyBundle) -> None:
    script = (
        "import sys; from pathlib import Path; import chat_api.app;"
        "from bundle_runtime.onnx_student import OnnxStudent;"
        f"OnnxStudent(Path({str(tiny_bundle.path)!r})).reply([('customer', 'hi')]);"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'distill_worker'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
