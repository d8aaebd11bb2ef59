"""Extractive answer spans, chosen as transformers 4's question-answering pipeline chose them.

Framework-free: numpy, and the model's tokenizer and its encodings (``tokenizers.Encoding``),
so any backend that returns start and end logits per window can answer with it.

A context too long for the model is cut into windows (``encode_windows``): each holds the
question and a stretch of context, consecutive stretches overlapping by ``doc_stride`` tokens.
In each window the start and end logits become probabilities by a softmax over the tokens an
answer may hold (the context, and the CLS token), a span scores start x end probability, and
spans run forward at most ``max_answer_len`` tokens (``window_spans``). The best spans of all
windows become character spans of the context, the same text (case aside) adding up its
scores (``best_answers``).

Quirks kept on purpose, since answers must match the pipeline's: left-padding tokenizers (the
question second) mask nothing out but padding; position 0 always passes the final filter; the
top spans are picked with the same numpy partition and sort, so ties (spans of score 0, which
appear when ``top_k`` asks for more spans than score above 0) come out in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hubserve.errors import InvalidInput, ModelUnsupported

#: The probability logit every blocked token gets before the softmax.
_BLOCKED = -10000.0
#: The null answer's score before any window is seen (large, so the first window sets it).
_NO_NULL = 1000000


@dataclass
class Window:
    """One forward pass: ``inputs`` (input name -> token ids), the ``encoding`` (offsets and
    words), ``p_mask`` ``[1, tokens]`` (1 where no answer may be), the attention mask
    ``[1, tokens]`` (or None) and ``shift`` (the pad tokens a left-padding tokenizer puts first)."""

    inputs: dict
    encoding: Any
    p_mask: np.ndarray
    attention_mask: Optional[np.ndarray]
    shift: int


@dataclass
class Windows:
    """The windows of one question and context; ``rows`` are their model inputs, one forward
    pass each (as the pipeline ran them), and ``context_index`` the context's sequence index."""

    windows: list
    context_index: int

    @property
    def rows(self) -> list:
        return [w.inputs for w in self.windows]


def input_names(tokenizer) -> list:
    """The inputs the pipeline fed the model: the tokenizer's ``model_input_names``, which in
    transformers 4 held ``token_type_ids`` unless the tokenizer's class (or its config) said
    otherwise; transformers 5's default leaves them out, so they are put back in that case."""
    names = list(tokenizer.model_input_names)
    if "token_type_ids" in names or getattr(tokenizer, "init_kwargs", {}).get("model_input_names"):
        return names
    for cls in type(tokenizer).__mro__:
        if cls.__name__ == "PreTrainedTokenizerBase":
            break
        if "model_input_names" in vars(cls):
            return names
    return names[:1] + ["token_type_ids"] + names[1:]


def encode_windows(tokenizer, question: str, context: str, max_seq_len: int, doc_stride: int) -> Windows:
    """Tokenizes ``question`` with ``context`` into overlapping windows of ``max_seq_len``
    tokens (fast tokenizers only). A right-padding tokenizer puts the question first."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelUnsupported("question answering needs a fast (Rust) tokenizer, and this model's tokenizer is not")
    if doc_stride > max_seq_len:
        raise InvalidInput(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
    question_first = tokenizer.padding_side == "right"
    first, second = (question, context) if question_first else (context, question)
    _check_room(tokenizer, question, first, second, max_seq_len, doc_stride)
    try:
        enc = tokenizer(text=first, text_pair=second, truncation="only_second" if question_first else "only_first",
                        max_length=max_seq_len, stride=doc_stride, return_token_type_ids=True,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    except BaseException as exc:  # noqa: BLE001 - tokenizers panics (a BaseException) when the stride leaves no room
        if not _out_of_room(exc):
            raise
        raise _no_room(tokenizer, first, second, max_seq_len, doc_stride) or exc from None
    names = [n for n in input_names(tokenizer) if n in enc]
    windows = []
    for i, ids in enumerate(enc["input_ids"]):
        ids = np.asarray(ids)
        if question_first:
            p_mask = np.array([0 if seq == 1 else 1 for seq in enc.sequence_ids(i)], dtype=np.int64)
        else:
            p_mask = np.zeros(len(ids), dtype=np.int64)
        if tokenizer.cls_token_id is not None:
            p_mask[ids == tokenizer.cls_token_id] = 0  # the CLS token stays (it stands for "no answer")
        mask = np.asarray(enc["attention_mask"][i])[None] if "attention_mask" in enc else None
        shift = int((ids == tokenizer.pad_token_id).sum()) if tokenizer.padding_side == "left" else 0
        windows.append(Window({n: list(enc[n][i]) for n in names}, enc.encodings[i], p_mask[None], mask, shift))
    return Windows(windows, 1 if question_first else 0)


def _out_of_room(exc: BaseException) -> bool:
    """Whether tokenizers refused the windows: the question leaves the context no room
    (an ``Exception``), or less room than ``doc_stride`` (a ``PanicException``)."""
    if type(exc).__name__ == "PanicException":
        return "stride" in str(exc)
    return isinstance(exc, Exception) and "Truncation error" in str(exc)


def _check_room(tokenizer, question: str, first: str, second: str, max_seq_len: int, doc_stride: int) -> None:
    """Refuses a question that leaves a window too little room for the context, before
    tokenizers does (it panics when that room is not more than ``doc_stride``)."""
    fixed = len(tokenizer(question, add_special_tokens=False)["input_ids"]) + tokenizer.num_special_tokens_to_add(True)
    if doc_stride < max_seq_len - fixed:
        return
    error = _no_room(tokenizer, first, second, max_seq_len, doc_stride)
    if error is not None:
        raise error


def _no_room(tokenizer, first: str, second: str, max_seq_len: int, doc_stride: int) -> Optional[InvalidInput]:
    """The 400 of a question that leaves the context too little room in a window of
    ``max_seq_len`` tokens (None where the text fits one window, or the room is enough)."""
    whole = tokenizer(text=first, text_pair=second)
    if len(whole["input_ids"]) <= max_seq_len:
        return None
    context_index = 1 if tokenizer.padding_side == "right" else 0
    fixed = sum(1 for seq in whole.sequence_ids(0) if seq != context_index)
    room = max_seq_len - fixed
    if room <= 0:
        return InvalidInput(f"the question takes {fixed} tokens with the special tokens, which leaves no room for "
                            f"the context in `max_seq_len` ({max_seq_len}): send a larger max_seq_len or a shorter "
                            "question")
    if doc_stride >= room:
        return InvalidInput(f"`doc_stride` ({doc_stride}) must be less than the room a window of `max_seq_len` "
                            f"({max_seq_len}) leaves for the context beside this question ({room} tokens)")
    return None


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum()


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` highest ``scores``, highest first (the pipeline's selection)."""
    if k == 1:
        return np.array([np.argmax(scores)])
    if scores.size <= k:
        return np.argsort(-scores)
    picked = np.argpartition(-scores, k)[:k]
    return picked[np.argsort(-scores[picked])]


def window_spans(start, end, p_mask, attention_mask, *, top_k: int, max_answer_len: int,
                 null_score: float, impossible: bool):
    """The ``top_k`` best ``(starts, ends, scores)`` token spans of one window, from its start
    and end logits ``[1, tokens]``; also the null score (CLS start x end), lowered to this
    window's when ``impossible``."""
    allowed = np.abs(p_mask - 1)
    if attention_mask is not None:
        allowed = allowed & attention_mask
    blocked = allowed == 0
    start = _softmax(np.where(blocked, _BLOCKED, start))
    end = _softmax(np.where(blocked, _BLOCKED, end))
    if impossible:
        null_score = min(null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    pairs = np.tril(np.triu(np.outer(start[0], end[0])), max_answer_len - 1)
    picked = _top(pairs.ravel(), top_k)
    starts, ends = np.unravel_index(picked, pairs.shape)
    # NOTE(hubserve): the pipeline tested membership in np.nonzero's (rows, columns) of a
    # [1, tokens] mask, so position 0 (every row index) always passed; kept for equal answers.
    passing = np.concatenate(np.nonzero(allowed))
    keep = np.isin(starts, passing) & np.isin(ends, passing)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, pairs[starts, ends], null_score


def char_span(encoding, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple:
    """The characters of tokens ``s..e``: whole words when ``align_to_words`` (where the
    tokenizer knows words), else the tokens' own offsets."""
    if align_to_words:
        try:
            first = encoding.word_to_chars(encoding.token_to_word(s), sequence_index=sequence_index)[0]
            last = encoding.word_to_chars(encoding.token_to_word(e), sequence_index=sequence_index)[1]
            return first, last
        except Exception:  # noqa: BLE001 - no word there (special token, tokenizer without words)
            pass
    return encoding.offsets[s][0], encoding.offsets[e][1]


def best_answers(windows: Windows, logits: list, context: str, *, top_k: int = 1, max_answer_len: int = 15,
                 handle_impossible_answer: bool = False, align_to_words: bool = True) -> list:
    """The ``top_k`` best ``{score, start, end, answer}`` over all windows, best first;
    ``logits`` holds per window ``(start_logits, end_logits)``, each ``[tokens]``."""
    pre_k = top_k * 2 + 10 if align_to_words else top_k  # aligning may merge some away
    null_score = _NO_NULL
    answers: list = []
    by_text: dict = {}
    for window, (start, end) in zip(windows.windows, logits):
        starts, ends, scores, null_score = window_spans(
            np.asarray(start)[None], np.asarray(end)[None], window.p_mask, window.attention_mask, top_k=pre_k,
            max_answer_len=max_answer_len, null_score=null_score, impossible=handle_impossible_answer)
        for s, e, score in zip(starts, ends, scores):
            first, last = char_span(window.encoding, int(s) - window.shift, int(e) - window.shift,
                                    windows.context_index, align_to_words)
            text = context[first:last]
            same = by_text.get(text.lower())
            if same is not None:
                same["score"] += score.item()
            else:
                by_text[text.lower()] = {"score": score.item(), "start": first, "end": last, "answer": text}
                answers.append(by_text[text.lower()])
    if handle_impossible_answer:
        answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
