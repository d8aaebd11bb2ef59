"""The model heads the text tasks share (a task with a head of its own declares it in its module)."""

from __future__ import annotations

from deployments.backends.base import Head

BASE = Head("base", "AutoModel", onnx="encoder")
SEQUENCE_CLASSIFICATION = Head("sequence-classification", "AutoModelForSequenceClassification", onnx="encoder")
TOKEN_CLASSIFICATION = Head("token-classification", "AutoModelForTokenClassification", onnx="encoder")
QUESTION_ANSWERING = Head("question-answering", "AutoModelForQuestionAnswering", onnx="encoder")
MASKED_LM = Head("masked-lm", "AutoModelForMaskedLM", onnx="encoder")
SEQ2SEQ_LM = Head("seq2seq-lm", "AutoModelForSeq2SeqLM", onnx="seq2seq-lm", generative=True)
CAUSAL_LM = Head("causal-lm", "AutoModelForCausalLM", onnx="causal-lm", generative=True)
