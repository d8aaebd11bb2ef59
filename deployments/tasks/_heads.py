"""The model heads the text tasks share (a task with a head of its own declares it in its module)."""

from __future__ import annotations

from deployments.backends.base import Head

BASE = Head("base", "AutoModel", "ORTModelForFeatureExtraction", "feature-extraction")
SEQUENCE_CLASSIFICATION = Head("sequence-classification", "AutoModelForSequenceClassification",
                               "ORTModelForSequenceClassification", "text-classification")
TOKEN_CLASSIFICATION = Head("token-classification", "AutoModelForTokenClassification",
                            "ORTModelForTokenClassification", "token-classification")
QUESTION_ANSWERING = Head("question-answering", "AutoModelForQuestionAnswering",
                          "ORTModelForQuestionAnswering", "question-answering")
MASKED_LM = Head("masked-lm", "AutoModelForMaskedLM", "ORTModelForMaskedLM", "fill-mask")
SEQ2SEQ_LM = Head("seq2seq-lm", "AutoModelForSeq2SeqLM", "ORTModelForSeq2SeqLM", "text2text-generation",
                  generative=True)
CAUSAL_LM = Head("causal-lm", "AutoModelForCausalLM", "ORTModelForCausalLM", "text-generation",
                 generative=True)
