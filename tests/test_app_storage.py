"""The app's chat history on a real SQLite file: migrations, streaming saves, secure delete, exports."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from app.export import to_json, to_markdown, write_export
from app.storage import MIGRATIONS, SCHEMA_VERSION, ChatStore, Message, StorageError

ZH_QUESTION = "请用一句话介绍长城。"
ZH_ANSWER = "长城是中国古代的军事防御工程，全长两万多公里。"


def _message(uid, role, content, **kw) -> Message:
    return Message(uid, role, content, time.time(), **kw)


def _raw(path) -> bytes:
    """Every byte SQLite keeps for this database: the file and its journal files."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        f = path.with_name(path.name + suffix)
        if f.exists():
            data += f.read_bytes()
    return data


def test_a_version_1_history_is_migrated_with_its_messages(tmp_path):
    path = tmp_path / "chats.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0] + "PRAGMA user_version=1;")
    old.execute("INSERT INTO conversations (uid, title, created_at, updated_at) VALUES ('c1', '旧对话', 1, 1)")
    old.execute("INSERT INTO messages (uid, conversation_id, role, content, created_at) "
                "VALUES ('m1', 1, 'user', ?, 1), ('m2', 1, 'assistant', ?, 2)", (ZH_QUESTION, ZH_ANSWER))
    old.commit()
    old.close()

    store = ChatStore(path)
    assert store.version == SCHEMA_VERSION == 4
    [conv] = store.conversations()
    assert (conv.title, conv.system_prompt, conv.settings) == ("旧对话", None, {})
    msgs = store.messages("c1")
    assert [(m.role, m.content, m.complete, m.interrupted) for m in msgs] == [
        ("user", ZH_QUESTION, True, False), ("assistant", ZH_ANSWER, True, False)]
    assert [(m.parent, m.version, m.versions) for m in msgs] == [(None, 1, 1), ("m1", 1, 1)]
    # the new columns work on the migrated file
    store.set_conversation_settings("c1", "你是一个助手。", {"temperature": 0.2})
    assert store.conversation("c1").settings == {"temperature": 0.2}
    store.close()
    assert ChatStore(path).version == 4  # opening again changes nothing


def test_a_history_from_a_newer_version_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "chats.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="newer llama-desk"):
        ChatStore(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_wal_mode_and_streamed_answer_survive_without_close(tmp_path):
    path = tmp_path / "历史" / "chats.sqlite3"  # a Chinese folder name
    store = ChatStore(path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.create_conversation("c", "流式")
    store.add_messages("c", [_message("u", "user", ZH_QUESTION), _message("a", "assistant", "", complete=False)])
    store.append_texts({"a": "长城是"})
    store.append_texts({"a": "中国"})
    # a second connection (another process after a crash) sees the committed part, marked interrupted
    other = ChatStore(path)
    answer = other.messages("c")[1]
    assert (answer.content, answer.complete, answer.interrupted) == ("长城是中国", False, True)
    store.finish_message("a", "长城是中国的。", "cancelled", {"generated_tokens": 5}, complete=False)
    store.append_texts({"a": "late"})  # text that arrives after the end is ignored
    answer = other.messages("c")[1]
    assert (answer.content, answer.finish_reason, answer.interrupted) == ("长城是中国的。", "cancelled", False)


def test_deleting_a_conversation_removes_its_text_from_the_files(tmp_path):
    path = tmp_path / "chats.sqlite3"
    store = ChatStore(path)
    secret = "机密口令 swordfish-7781 " * 20
    store.create_conversation("keep", "保留")
    store.add_messages("keep", [_message("k", "user", "留下的内容 kept-text")])
    store.create_conversation("gone", "删除")
    store.add_messages("gone", [_message("g1", "user", secret), _message("g2", "assistant", secret + "回答")])
    store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the text now sits in the main file too
    assert secret.encode("utf-8") in _raw(path)

    store.delete_conversation("gone")
    raw = _raw(path)
    assert "swordfish-7781".encode() not in raw and "机密口令".encode("utf-8") not in raw
    assert "kept-text".encode() in raw
    assert [c.uid for c in store.conversations()] == ["keep"]
    assert store.messages("gone") == []


def test_edits_and_regenerations_are_versions_and_nothing_is_lost(tmp_path):
    store = ChatStore(tmp_path / "c.sqlite3")
    store.create_conversation("c", "t")
    store.add_messages("c", [_message(f"m{i}", "user" if i % 2 == 0 else "assistant", f"text {i}") for i in range(6)])
    store.add_messages("c", [_message("m5b", "assistant", "regenerated", parent="m4")])
    assert [(m.uid, m.version, m.versions) for m in store.messages("c")][-2:] == [("m4", 1, 1), ("m5b", 2, 2)]
    store.add_messages("c", [_message("m2b", "user", "edited 改过", parent="m1"),
                             _message("m3b", "assistant", "answer to the edit")])
    shown = store.messages("c")
    assert [(m.uid, m.content, m.version, m.versions) for m in shown] == [
        ("m0", "text 0", 1, 1), ("m1", "text 1", 1, 1), ("m2b", "edited 改过", 2, 2), ("m3b", "answer to the edit", 1, 1)]
    assert store.show_version("m2b", -1) == "m2"      # back to the first question: its later turns are there
    assert [m.uid for m in store.messages("c")] == ["m0", "m1", "m2", "m3", "m4", "m5b"]
    assert store.show_version("m5b", -1) == "m5"
    assert [m.uid for m in store.messages("c")][-1] == "m5"
    assert store.show_version("m5", -1) == "m5"       # the first version has none before it
    store.close()
    again = ChatStore(tmp_path / "c.sqlite3")         # what is shown is stored
    assert [(m.uid, m.version, m.versions) for m in again.messages("c")][-2:] == [("m4", 1, 1), ("m5", 1, 2)]


def test_search_finds_titles_and_message_text_in_any_case_and_script(tmp_path):
    store = ChatStore(tmp_path / "c.sqlite3")
    store.create_conversation("a", "Travel plans")
    store.add_messages("a", [_message("a1", "user", "Where is ÄRHUS?")])
    store.create_conversation("b", "古诗")
    store.add_messages("b", [_message("b1", "user", ZH_QUESTION)])
    assert store.search("travel") == ["a"]
    assert store.search("ärhus") == ["a"]
    assert store.search("长城") == ["b"]
    assert store.search("nothing like this") == []


def test_exports_keep_chinese_and_mark_incomplete_answers(tmp_path):
    store = ChatStore(tmp_path / "c.sqlite3")
    conv = store.create_conversation("c", "长城问答", system_prompt="用中文回答。")
    store.add_messages("c", [_message("u", "user", ZH_QUESTION),
                             _message("a", "assistant", "```python\nprint('长城')\n```", complete=False)])
    msgs = store.messages("c")

    md = to_markdown(conv, msgs)
    assert md.startswith("# 长城问答\n")
    assert "## System\n\n用中文回答。" in md
    assert f"## User\n\n{ZH_QUESTION}" in md
    assert "## Assistant (incomplete)\n\n```python\nprint('长城')\n```" in md

    folder = tmp_path / "导出"
    folder.mkdir()
    json_path = write_export(folder / "长城.json", conv, msgs)
    loaded = json.loads(json_path.read_text(encoding="utf-8"))
    assert "长城问答" in json_path.read_text(encoding="utf-8")  # not \\u escapes
    assert loaded["messages"] == [{"role": "system", "content": "用中文回答。"},
                                  {"role": "user", "content": ZH_QUESTION},
                                  {"role": "assistant", "content": "```python\nprint('长城')\n```"}]
    assert loaded["details"][1]["complete"] is False
    assert loaded == to_json(conv, msgs)
    md_path = write_export(folder / "长城.md", conv, msgs)
    assert md_path.read_text(encoding="utf-8") == md
    assert sorted(p.name for p in folder.iterdir()) == ["长城.json", "长城.md"]
