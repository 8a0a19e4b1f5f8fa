"""The conversation logic between the views, the history and the model: send, stream, stop, regenerate, edit.

The order that makes a crash harmless: the question and an empty, unfinished answer are
committed first, and only that commit's reply starts the model. The engine thread sends the
answer's text both to the window and, directly, to the storage thread (``Services`` connects
them; the storage commits it every quarter second); the end of the answer then replaces it with
the engine's final text and marks it complete, stopped or failed. One answer is written at a
time; it keeps being saved if the user switches to another conversation meanwhile.
"""

from __future__ import annotations

import time
import uuid

from PySide6.QtCore import QObject, Signal

from .conversation_list import ConversationList
from .engine_worker import EngineHost
from .message_view import MessageView
from .preferences import Preferences, generation_values
from .storage import Conversation, Message
from .storage_worker import Storage

TITLE_CHARS = 48
STAT_KEYS = ("generated_tokens", "tokens_per_s", "ttft_s", "prompt_tokens", "cached_tokens", "prefill_tokens_per_s",
             "dropped_messages", "context_length", "drafted_tokens", "accepted_tokens")


def new_uid() -> str:
    return uuid.uuid4().hex


def title_from(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1].rstrip() + "…"


class ChatSession(QObject):
    answeringChanged = Signal(bool)
    contextUsed = Signal(int, int)        # tokens used, context length
    problem = Signal(str)                 # a message for the user (status bar / dialog)
    answerFinished = Signal(str, object)  # answer uid, result (scripts and tests wait on it)
    conversationShown = Signal()

    def __init__(self, storage: Storage, engine: EngineHost, view: MessageView, conversations: ConversationList,
                 prefs: Preferences, parent: QObject | None = None):
        super().__init__(parent)
        self.storage, self.engine, self.view, self.list, self.prefs = storage, engine, view, conversations, prefs
        self.conversation: Conversation | None = None
        self.messages: list[Message] = []
        self.streaming: tuple[str, Message] | None = None    # (conversation uid, answer being written)
        self._wanted: str | None = None                       # the conversation last asked for
        self._stopped_early: str | None = None                # an answer stopped before the model started it
        engine.worker.tokens.connect(self._on_tokens)
        engine.worker.contextReport.connect(self._on_context)
        engine.worker.finished.connect(self._on_finished)
        engine.worker.failed.connect(self._on_failed)
        view.editSubmitted.connect(self.edit_and_continue)
        view.regenerate.connect(self.regenerate)

    @property
    def answering(self) -> bool:
        return self.streaming is not None

    def speaker(self, role: str) -> str:
        if role == "user":
            return self.tr("You")
        info = self.engine.info
        return info.name if info is not None else self.tr("Assistant")

    # -- showing a conversation ---------------------------------------------------------------------

    def open(self, uid: str) -> None:
        self._wanted = uid
        self.storage.call("load", uid, then=self._show)

    def new_conversation(self) -> None:
        """Show an empty conversation; it is stored when its first message is sent."""
        self.conversation, self.messages, self._wanted = None, [], None
        self.view.clear()
        self.list.list.setCurrentItem(None)
        self.conversationShown.emit()

    def _show(self, loaded) -> None:
        conversation, messages = loaded
        if conversation is None or conversation.uid != self._wanted:  # gone, or another was asked for since
            return
        if self.streaming and self.streaming[0] == conversation.uid:
            # the storage may be a quarter second behind the stream: show the stream's own text
            live = self.streaming[1]
            messages = [live if m.uid == live.uid else m for m in messages]
        self.conversation, self.messages = conversation, messages
        self.view.clear()
        for m in messages:
            card = self.view.add(m, self.speaker(m.role))
            if self.streaming and m is self.streaming[1]:
                card.refresh_footer(streaming=True)
        self.view.set_actions_enabled(not self.answering)
        self.conversationShown.emit()

    # -- asking -------------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        if self.answering or not text.strip():
            return
        if self.conversation is None:
            conv = Conversation(new_uid(), title_from(text), time.time(), time.time())
            self.storage.call("create_conversation", conv.uid, conv.title)
            self.conversation, self.messages = conv, []
            self._wanted = conv.uid
            self.list.upsert(conv)
            self.list.list.blockSignals(True)  # it is shown already: selecting it must not load it
            self.list.select(conv.uid)
            self.list.list.blockSignals(False)
        question = Message(new_uid(), "user", text, time.time())
        self.messages.append(question)
        self.view.add(question, self.speaker("user"))
        self._answer([question])

    def regenerate(self) -> None:
        if self.answering or not self.messages or self.messages[-1].role != "assistant":
            return
        last = self.messages.pop()
        self.view.remove_from(last.uid)
        self.storage.call("delete_messages_from", last.uid)
        self._answer([])

    def edit_and_continue(self, uid: str, text: str) -> None:
        index = next((i for i, m in enumerate(self.messages) if m.uid == uid), None)
        if self.answering or index is None:
            return
        self.messages[index].content = text
        del self.messages[index + 1:]
        self.view.remove_from(uid, keep_this=True)
        self.view.card(uid).set_text(text)
        self.storage.call("edit_message", uid, text)
        self.storage.call("delete_messages_from", uid, True)
        self._answer([])

    def _answer(self, new_messages: list[Message]) -> None:
        """Commit ``new_messages`` and an empty answer, then (once committed) start the model."""
        conv = self.conversation
        answer = Message(new_uid(), "assistant", "", time.time(), complete=False)
        # An answer stopped or failed before its first word is sent as an empty answer: leaving it out would
        # put two questions in a row, which LLaMA2's format refuses (Meta's format allows an empty answer).
        history = [{"role": m.role, "content": m.content} for m in self.messages]
        system = conv.system_prompt if conv.system_prompt is not None else self.prefs.chat.system_prompt
        if system.strip():
            history.insert(0, {"role": "system", "content": system})
        values = generation_values(self.prefs.chat, conv.settings)
        self.messages.append(answer)
        self.streaming = (conv.uid, answer)
        card = self.view.add(answer, self.speaker("assistant"))
        card.refresh_footer(streaming=True)
        self.view.set_actions_enabled(False)
        self.answeringChanged.emit(True)
        self.list.upsert(conv)
        self.storage.call("add_messages", conv.uid, [Message(**vars(m)) for m in new_messages + [answer]],
                          then=lambda _r: self._start_model(answer.uid, history, values, conv.uid),
                          otherwise=lambda error: self._on_failed(answer.uid, error))

    def _start_model(self, uid: str, history: list[dict], values: dict, conversation: str) -> None:
        if self._stopped_early == uid:  # Stop came before the model had the question
            self._end(uid, "", "cancelled", {"generated_tokens": 0}, False)
        else:  # the conversation's state on disk is reused, and brought up to date after the answer
            self.engine.chat(uid, history, values, {"key": conversation, "budget": self.prefs.saved_states_bytes})

    def stop(self) -> None:
        if self.streaming:
            uid = self.streaming[1].uid
            if self.engine.answering != uid:  # not sent to the model yet: it is not started at all
                self._stopped_early = uid
            self.engine.stop(uid)

    # -- the engine's replies -----------------------------------------------------------------------

    def _live_card(self, uid: str):
        shown = self.conversation is not None and self.streaming and self.streaming[0] == self.conversation.uid
        return self.view.card(uid) if shown else None

    def _on_tokens(self, uid: str, text: str) -> None:
        if self.streaming and self.streaming[1].uid == uid:
            self.streaming[1].content += text
            card = self._live_card(uid)
            if card:
                card.body.set_text(card.message.content)

    def _on_context(self, uid: str, dropped: int, prompt_tokens: int, context_length: int) -> None:
        if self._live_card(uid) is not None:
            self.view.show_left_out(dropped, context_length)
        self.contextUsed.emit(prompt_tokens, context_length)

    def _on_finished(self, uid: str, result: dict) -> None:
        stats = {k: result[k] for k in STAT_KEYS if k in result}
        self._end(uid, result["text"], result["finish_reason"], stats, result["finish_reason"] != "cancelled")
        self.contextUsed.emit(result["prompt_tokens"] + result["generated_tokens"], result["context_length"])

    def _on_failed(self, uid: str, message: str) -> None:
        text = self.streaming[1].content if self.streaming and self.streaming[1].uid == uid else ""
        self._end(uid, text, "error", {"error": message}, False)
        self.problem.emit(message)

    def _end(self, uid: str, text: str, reason: str, stats: dict, complete: bool) -> None:
        if not self.streaming or self.streaming[1].uid != uid:
            return
        answer = self.streaming[1]
        card = self._live_card(uid)
        answer.content, answer.finish_reason, answer.stats, answer.complete = text, reason, stats, complete
        self.streaming = None
        self.storage.call("finish_message", uid, text, reason, stats, complete)
        if card is not None:
            card.set_text(text)
            card.refresh_footer()
        self.view.set_actions_enabled(True)
        self.answeringChanged.emit(False)
        self.answerFinished.emit(uid, dict(stats, finish_reason=reason, text=text))
