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
from .message_view import MessageView, can_continue, prefill_line
from .preferences import Preferences, generation_values
from .storage import Conversation, Message
from .storage_worker import Storage

TITLE_CHARS = 48
STAT_KEYS = ("generated_tokens", "tokens_per_s", "ttft_s", "prompt_tokens", "cached_tokens", "prefill_tokens_per_s",
             "dropped_messages", "context_length", "drafted_tokens", "accepted_tokens")


def new_uid() -> str:
    return uuid.uuid4().hex


def title_from(text: str) -> str:
    """A conversation's title from its first question: on one line, without Markdown marks, cut at a word."""
    words = " ".join(text.replace("`", "").replace("**", "").lstrip("#> *-").split())
    if len(words) <= TITLE_CHARS:
        return words
    cut = words[:TITLE_CHARS - 1]
    if " " in cut[TITLE_CHARS // 2:]:          # Latin text: at a space; Chinese has none
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


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
        self._prompt_tokens = 0                               # of the answer being written
        self._tokens_before: dict[str, int] = {}              # answers being continued: tokens they had
        self._reading: tuple[str, float, int] | None = None   # (answer uid, when, tokens read) at its first report
        # a new conversation's own settings, chosen before its first message: (system prompt, overrides)
        self.draft_settings: tuple[str | None, dict] = (None, {})
        engine.worker.tokens.connect(self._on_tokens)
        engine.worker.tokenCount.connect(self._on_token_count)
        engine.worker.prefillProgress.connect(self._on_prefill)
        engine.worker.contextReport.connect(self._on_context)
        engine.worker.finished.connect(self._on_finished)
        engine.worker.failed.connect(self._on_failed)
        view.editSubmitted.connect(self.edit_and_continue)
        view.regenerate.connect(self.regenerate)
        view.versionRequested.connect(self.show_version)
        view.continueRequested.connect(self.continue_answer)

    @property
    def answering(self) -> bool:
        return self.streaming is not None

    @property
    def wanted(self) -> str | None:
        """The conversation asked for last (it may still be loading)."""
        return self._wanted

    @property
    def answering_here(self) -> bool:
        """The answer being written belongs to the conversation shown."""
        return self._streaming_shown()

    def _streaming_shown(self) -> bool:
        return bool(self.streaming and self.conversation is not None and self.streaming[0] == self.conversation.uid)

    def speaker(self, role: str, message: Message | None = None) -> str:
        """Who wrote a message: the model named in the answer itself, else the one loaded now."""
        if role == "user":
            return self.tr("You")
        if message is not None and message.stats.get("model"):
            return message.stats["model"]
        info = self.engine.info
        return info.name if info is not None else self.tr("Assistant")

    def report_context(self) -> None:
        """The shown conversation's context use, from its last answer (0 for a new conversation)."""
        if self._streaming_shown():
            return                        # the stream reports as it goes
        limit = self.engine.info.context_length if self.engine.info is not None else 0
        last = next((m for m in reversed(self.messages) if m.role == "assistant" and "prompt_tokens" in m.stats), None)
        used = last.stats["prompt_tokens"] + last.stats.get("generated_tokens", 0) if last is not None else 0
        self.contextUsed.emit(used, last.stats.get("context_length", limit) if last is not None else limit)

    # -- showing a conversation ---------------------------------------------------------------------

    def open(self, uid: str) -> None:
        self._wanted = uid
        self.storage.call("load", uid, then=self._show)

    def new_conversation(self) -> None:
        """Show an empty conversation; it is stored when its first message is sent."""
        self.conversation, self.messages, self._wanted = None, [], None
        self.draft_settings = (None, {})
        self.view.clear()
        self.list.list.setCurrentItem(None)
        self.conversationShown.emit()
        self.report_context()

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
            card = self.view.add(m, self.speaker(m.role, m))
            if self.streaming and m is self.streaming[1]:
                card.refresh_footer(streaming=True)
        self.view.set_actions_enabled(not self.answering)
        self.conversationShown.emit()
        if self._streaming_shown():
            self._on_token_count(self.streaming[1].uid, self.streaming[1].stats.get("streamed", 0))
        else:
            self.report_context()

    # -- asking -------------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        if self.answering or not text.strip():
            return
        if self.conversation is None:
            system_prompt, overrides = self.draft_settings
            conv = Conversation(new_uid(), title_from(text), time.time(), time.time(), system_prompt, dict(overrides))
            self.storage.call("create_conversation", conv.uid, conv.title, system_prompt, overrides)
            self.draft_settings = (None, {})
            self.conversation, self.messages = conv, []
            self._wanted = conv.uid
            self.list.upsert(conv)
            self.list.list.blockSignals(True)  # it is shown already: selecting it must not load it
            self.list.select(conv.uid)
            self.list.list.blockSignals(False)
        parent = self.messages[-1].uid if self.messages else None
        question = Message(new_uid(), "user", text, time.time(), parent=parent)
        self.messages.append(question)
        self.view.add(question, self.speaker("user"))
        self._answer([question])

    def set_draft_settings(self, system_prompt: str | None, overrides: dict) -> None:
        """Settings for the new conversation shown, kept until its first message creates it."""
        self.draft_settings = (system_prompt, dict(overrides))

    def regenerate(self) -> None:
        """A new version of the last answer; the old one stays (``< 1/2 >`` under the answer shows it)."""
        if self.answering or not self.messages or self.messages[-1].role != "assistant":
            return
        last = self.messages.pop()
        self.view.remove_from(last.uid)
        self._answer([], versions=last.versions + 1)

    def edit_and_continue(self, uid: str, text: str) -> None:
        """A new version of a question, answered anew; the old one and the turns after it stay, unshown."""
        index = next((i for i, m in enumerate(self.messages) if m.uid == uid), None)
        if self.answering or index is None:
            return
        old = self.messages[index]
        question = Message(new_uid(), "user", text, time.time(), parent=old.parent,
                           version=old.versions + 1, versions=old.versions + 1)
        conv = self.conversation
        if index == 0 and conv.title == title_from(old.content):   # a title the user did not choose follows
            conv.title = title_from(text)
            self.storage.call("rename_conversation", conv.uid, conv.title)
            self.list.set_title(conv.uid, conv.title)
        del self.messages[index:]
        self.view.remove_from(uid)
        self.messages.append(question)
        self.view.add(question, self.speaker("user"))
        self._answer([question])

    def show_version(self, uid: str, step: int) -> None:
        """Show another version of a message; the conversation goes on from what is shown."""
        if self.answering or self.conversation is None:
            return
        self._wanted = self.conversation.uid
        self.storage.call("show_version", self.conversation.uid, uid, step, then=self._show)

    def continue_answer(self) -> None:
        """Go on writing the last answer from where it stopped (Stop, the length limit, a closed app)."""
        answer = self.messages[-1] if self.messages else None
        if self.answering or answer is None or not can_continue(answer):
            return
        self.messages.pop()               # shown again as the one being written
        history, values = self._request(self.messages)
        conv = self.conversation.uid
        self._tokens_before[answer.uid] = answer.stats.get("generated_tokens", 0)
        self.view.remove_from(answer.uid)
        self._stream_into(answer)
        self.storage.call("reopen_message", answer.uid,
                          then=lambda _r: self._start_model(answer.uid, history, values, conv, answer.content),
                          otherwise=lambda error: self._on_failed(answer.uid, error))

    def _request(self, messages: list[Message]) -> tuple[list[dict], dict]:
        """What the model is sent for an answer after ``messages``: the history and the generation settings."""
        conv = self.conversation
        # An answer stopped or failed before its first word is sent as an empty answer: leaving it out would
        # put two questions in a row, which LLaMA2's format refuses (Meta's format allows an empty answer).
        history = [{"role": m.role, "content": m.content} for m in messages]
        system = conv.system_prompt if conv.system_prompt is not None else self.prefs.chat.system_prompt
        if system.strip():
            history.insert(0, {"role": "system", "content": system})
        return history, generation_values(self.prefs.chat, conv.settings)

    def _stream_into(self, answer: Message) -> None:
        """Show ``answer`` as the one being written."""
        self.messages.append(answer)
        self.streaming = (self.conversation.uid, answer)
        card = self.view.add(answer, self.speaker("assistant", answer))
        card.refresh_footer(streaming=True)
        self.view.set_actions_enabled(False)
        self.answeringChanged.emit(True)
        self.list.upsert(self.conversation)

    def _answer(self, new_messages: list[Message], versions: int = 1) -> None:
        """Commit ``new_messages`` and an empty answer, then (once committed) start the model."""
        answer = Message(new_uid(), "assistant", "", time.time(), complete=False,
                         parent=(new_messages or self.messages)[-1].uid, version=versions, versions=versions,
                         stats={"model": self.engine.info.name} if self.engine.info is not None else {})
        history, values = self._request(self.messages)
        conv = self.conversation.uid
        self._stream_into(answer)
        self.storage.call("add_messages", conv, [Message(**vars(m)) for m in new_messages + [answer]],
                          then=lambda _r: self._start_model(answer.uid, history, values, conv),
                          otherwise=lambda error: self._on_failed(answer.uid, error))

    def _start_model(self, uid: str, history: list[dict], values: dict, conversation: str,
                     answer_start: str = "") -> None:
        if self._stopped_early == uid:  # Stop came before the model had the question
            self._end(uid, answer_start, "cancelled", {"generated_tokens": self._tokens_before.pop(uid, 0)}, False)
        else:  # the conversation's state on disk is reused, and brought up to date after the answer
            self.engine.chat(uid, history, values, answer_start,
                             {"key": conversation, "budget": self.prefs.saved_states_bytes})

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

    def _on_prefill(self, uid: str, done: int, total: int, reused: bool) -> None:
        """The model reads a long conversation before it writes: how far, how long still, state reused."""
        if not self.streaming or self.streaming[1].uid != uid:
            return
        answer, now = self.streaming[1], time.monotonic()
        answer.stats["state_reused"] = reused
        if self._reading is None or self._reading[0] != uid:
            self._reading = (uid, now, done)
        _uid, since, first = self._reading
        rate = (done - first) / (now - since) if now > since and done > first else None
        card = self._live_card(uid)
        if card is not None:
            card.refresh_footer(streaming=True, reading="" if done >= total else
                                prefill_line(done, total, (total - done) / rate if rate else None))

    def _on_tokens(self, uid: str, text: str) -> None:
        if self.streaming and self.streaming[1].uid == uid:
            self.streaming[1].content += text
            card = self._live_card(uid)
            if card and self._reading is not None and self._reading[0] == uid:
                self._reading = None
                card.refresh_footer(streaming=True)   # read: writing now
            if card:
                card.body.set_text(card.message.content)

    def _on_context(self, uid: str, dropped: int, prompt_tokens: int, context_length: int) -> None:
        self._prompt_tokens = prompt_tokens
        if self._live_card(uid) is not None:
            self.view.show_left_out(dropped, context_length)
            self.contextUsed.emit(prompt_tokens, context_length)

    def _on_token_count(self, uid: str, generated: int) -> None:
        if self.streaming and self.streaming[1].uid == uid:
            self.streaming[1].stats["streamed"] = generated
            if self._live_card(uid) is not None and self.engine.info is not None:
                self.contextUsed.emit(self._prompt_tokens + generated, self.engine.info.context_length)

    def _on_finished(self, uid: str, result: dict) -> None:
        stats = {k: result[k] for k in STAT_KEYS if k in result}
        if uid in self._tokens_before:    # a continued answer: count all of its tokens
            stats["generated_tokens"] = stats.get("generated_tokens", 0) + self._tokens_before.pop(uid)
        shown = self._live_card(uid) is not None
        self._end(uid, result["text"], result["finish_reason"], stats, result["finish_reason"] != "cancelled")
        if shown:
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
        stats = dict(stats, **{k: answer.stats[k] for k in ("model", "state_reused") if answer.stats.get(k)})
        answer.content, answer.finish_reason, answer.stats, answer.complete = text, reason, stats, complete
        self.streaming = None
        self.storage.call("finish_message", uid, text, reason, stats, complete)
        if card is not None:
            card.set_text(text)
            card.refresh_footer()
        self.view.set_actions_enabled(True)
        self.answeringChanged.emit(False)
        self.answerFinished.emit(uid, dict(stats, finish_reason=reason, text=text))
